// Voices: the picker (search by name or language), the table with delete, adding from a file or the mic.

import { ApiError, api, errorMessage, getJson } from './api.js';

const $ = (id) => document.getElementById(id);
const MAX_RECORDING = 30; // seconds: the server refuses longer references
const MIN_RECORDING = 1; // seconds: and shorter ones
const CONFIRM_FOR = 5000; // ms a "Delete?" button waits for the second press

function show(el, message) {
  el.textContent = message || '';
  el.hidden = !message;
}

function label(voice) {
  const aliases = voice.aliases?.length ? ` · also ${voice.aliases.join(', ')}` : '';
  const shown = voice.name && voice.name !== voice.id ? `${voice.name} (${voice.id})` : voice.id;
  return `${shown} — ${voice.language || 'unknown language'}${aliases}`;
}

function matches(voice, query, language) {
  if (language && voice.language !== language) return false;
  if (!query) return true;
  const haystack = [voice.id, voice.name, voice.language, voice.engine, voice.kind, ...(voice.aliases || [])]
    .join(' ').toLowerCase();
  return query.toLowerCase().split(/\s+/).every((word) => haystack.includes(word));
}

export function setupVoices({ onVoices }) {
  let voices = [];
  let recording = null; // {blob, url, seconds} of the last microphone take

  function renderPicker() {
    const select = $('voice');
    const keep = select.value || select.dataset.want;
    const query = $('voice-search').value.trim();
    const language = $('language-filter').value;
    const shown = voices.filter((v) => matches(v, query, language));
    if (shown.length) {
      select.replaceChildren(...shown.map((v) => new Option(label(v), v.id)));
      select.value = shown.some((v) => v.id === keep) ? keep : shown[0].id;
      select.disabled = false;
    } else {
      select.replaceChildren(new Option('No voice matches the search', ''));
      select.disabled = true;
    }
    $('voice-count').textContent = `(${shown.length} of ${voices.length})`;
    markSelected();
  }

  function renderLanguages() {
    const select = $('language-filter');
    const keep = select.value;
    const counts = new Map();
    for (const v of voices) counts.set(v.language || '', (counts.get(v.language || '') || 0) + 1);
    const options = [...counts].filter(([lang]) => lang).sort(([a], [b]) => a.localeCompare(b))
      .map(([lang, n]) => new Option(`${lang} (${n})`, lang));
    select.replaceChildren(new Option('All languages', ''), ...options);
    select.value = counts.has(keep) ? keep : '';
  }

  function markSelected() {
    for (const row of $('voice-table').tBodies[0].rows) {
      row.classList.toggle('selected', row.dataset.id === $('voice').value);
    }
  }

  function use(id) {
    $('voice-search').value = '';
    $('language-filter').value = '';
    $('voice').dataset.want = id;
    $('voice').value = id;
    renderPicker();
    $('voice').focus();
  }

  function deleteButton(voice) {
    const button = document.createElement('button');
    button.type = 'button';
    button.className = 'small danger';
    button.textContent = 'Delete';
    button.setAttribute('aria-label', `Delete voice ${voice.id}`);
    let armed = null;
    button.addEventListener('click', async () => {
      if (!armed) { // first press asks, second press within a few seconds deletes
        button.textContent = 'Delete?';
        button.setAttribute('aria-label', `Press again to delete ${voice.id}`);
        armed = setTimeout(() => {
          armed = null;
          button.textContent = 'Delete';
          button.setAttribute('aria-label', `Delete voice ${voice.id}`);
        }, CONFIRM_FOR);
        return;
      }
      clearTimeout(armed);
      button.disabled = true;
      button.textContent = 'Deleting…';
      try {
        const response = await api(`/v1/audio/voices/${encodeURIComponent(voice.id)}`, { method: 'DELETE' });
        if (!response.ok) throw new ApiError(await errorMessage(response), response.status);
        $('add-status').textContent = `Deleted ${voice.id}.`;
        show($('voices-error'), '');
        await reload();
      } catch (error) {
        show($('voices-error'), `Could not delete ${voice.id}: ${error.message}`);
        button.disabled = false;
        button.textContent = 'Delete';
        armed = null;
      }
    });
    return button;
  }

  function renderTable() {
    const rows = voices.map((voice) => {
      const row = document.createElement('tr');
      row.dataset.id = voice.id;
      const name = document.createElement('td');
      name.append(voice.name || voice.id);
      if (voice.name && voice.name !== voice.id) {
        name.append(Object.assign(document.createElement('span'), { className: 'id', textContent: voice.id }));
      }
      if (voice.kind === 'registered' && voice.base_voice) {
        const similarity = voice.similarity != null ? `, similarity ${Number(voice.similarity).toFixed(2)}` : '';
        name.append(Object.assign(document.createElement('span'), {
          className: 'id', textContent: `from ${voice.duration ?? '?'} s of audio, on ${voice.base_voice}${similarity}`,
        }));
      }
      const cells = [voice.language || '–', voice.engine, voice.kind].map((text) => {
        const td = document.createElement('td');
        td.textContent = text;
        return td;
      });
      const actions = document.createElement('td');
      actions.className = 'actions';
      const useButton = document.createElement('button');
      useButton.type = 'button';
      useButton.className = 'small';
      useButton.textContent = 'Use';
      useButton.setAttribute('aria-label', `Use voice ${voice.id}`);
      useButton.addEventListener('click', () => use(voice.id));
      actions.append(useButton);
      if (voice.kind === 'registered') actions.append(' ', deleteButton(voice));
      row.append(name, ...cells, actions);
      return row;
    });
    $('voice-table').tBodies[0].replaceChildren(...rows);
    $('voices-total').textContent = `(${voices.length})`;
    markSelected();
  }

  async function reload() {
    const select = $('voice');
    if (!select.dataset.want) { // start on the server's default voice
      const ready = await api('/ready').then((r) => r.json()).catch(() => ({}));
      if (ready.default_voice) select.dataset.want = ready.default_voice;
    }
    const body = await getJson('/v1/audio/voices');
    voices = (body.data || []).slice().sort((a, b) => (a.kind === b.kind ? a.id.localeCompare(b.id)
      : a.kind === 'registered' ? -1 : 1));
    renderLanguages();
    renderPicker();
    renderTable();
    onVoices(voices);
    return voices;
  }

  // ---- adding a voice --------------------------------------------------------------------------------------

  function setRecording(take) {
    if (recording) URL.revokeObjectURL(recording.url);
    recording = take;
    const preview = $('record-preview');
    if (take) { preview.src = take.url; preview.hidden = false; } else { preview.removeAttribute('src'); preview.hidden = true; }
  }

  $('voice-file').addEventListener('change', () => {
    if ($('voice-file').files.length) {
      setRecording(null);
      $('record-status').textContent = '';
      if (!$('voice-name').value) $('voice-name').value = $('voice-file').files[0].name.replace(/\.[^.]+$/, '');
    }
  });

  let recorder = null;
  $('record-button').addEventListener('click', async () => {
    const button = $('record-button');
    if (recorder) { recorder.stop(); return; }
    if (!navigator.mediaDevices?.getUserMedia || !window.MediaRecorder) {
      $('record-status').textContent = 'Recording needs a browser with microphone access over HTTPS or on localhost.';
      return;
    }
    let stream;
    try {
      stream = await navigator.mediaDevices.getUserMedia({ audio: true });
    } catch (error) {
      $('record-status').textContent = `No microphone: ${error.message}`;
      return;
    }
    const type = ['audio/webm;codecs=opus', 'audio/ogg;codecs=opus', 'audio/mp4']
      .find((t) => MediaRecorder.isTypeSupported(t));
    recorder = new MediaRecorder(stream, type ? { mimeType: type } : {});
    const chunks = [];
    const started = performance.now();
    const seconds = () => (performance.now() - started) / 1000;
    const tick = setInterval(() => {
      $('record-status').textContent = `Recording… ${seconds().toFixed(1)} s (up to ${MAX_RECORDING} s). Press Stop when done.`;
      if (seconds() >= MAX_RECORDING) recorder.stop();
    }, 200);
    recorder.addEventListener('dataavailable', (event) => { if (event.data.size) chunks.push(event.data); });
    recorder.addEventListener('stop', () => {
      clearInterval(tick);
      stream.getTracks().forEach((t) => t.stop());
      const length = seconds();
      const blob = new Blob(chunks, { type: recorder.mimeType || 'audio/webm' });
      recorder = null;
      button.setAttribute('aria-pressed', 'false');
      button.textContent = '● Record';
      $('voice-file').value = '';
      setRecording({ blob, url: URL.createObjectURL(blob), seconds: length });
      $('record-status').textContent = length < MIN_RECORDING
        ? `Only ${length.toFixed(1)} s: record at least ${MIN_RECORDING} s.`
        : `Recorded ${length.toFixed(1)} s. Listen below, then add the voice.`;
    });
    recorder.start(250);
    button.setAttribute('aria-pressed', 'true');
    button.textContent = '■ Stop';
  });

  $('add-voice-form').addEventListener('submit', async (event) => {
    event.preventDefault();
    const error = $('add-error');
    show(error, '');
    const name = $('voice-name').value.trim();
    const file = $('voice-file').files[0];
    if (!name) { show(error, 'Give the voice a name.'); $('voice-name').focus(); return; }
    if (!file && !recording) { show(error, 'Choose an audio file or record one.'); $('voice-file').focus(); return; }
    const form = new FormData();
    form.append('name', name);
    if (file) form.append('audio', file, file.name);
    else form.append('audio', recording.blob, `recording.${recording.blob.type.includes('ogg') ? 'ogg' : 'webm'}`);
    for (const field of ['transcript', 'language']) {
      const value = $(`voice-${field}`).value.trim();
      if (value) form.append(field, value);
    }
    if ($('voice-replace').checked) form.append('replace', 'true');
    const button = $('add-voice-button');
    button.disabled = true;
    $('add-progress').hidden = false;
    $('add-status').textContent = 'Uploading and analysing the voice… this takes a few seconds.';
    try {
      const response = await api('/v1/audio/voices', { method: 'POST', body: form });
      if (!response.ok) throw new ApiError(await errorMessage(response), response.status);
      const voice = await response.json();
      await reload();
      use(voice.id);
      const base = voice.base_voice ? ` on ${voice.base_voice}` : '';
      $('add-status').textContent = `${response.status === 201 ? 'Added' : 'Replaced'} ${voice.id}${base}; it is now picked.`;
      $('voice-file').value = '';
      setRecording(null);
    } catch (err) {
      $('add-status').textContent = '';
      show(error, err.message);
    } finally {
      button.disabled = false;
      $('add-progress').hidden = true;
    }
  });

  $('voice-search').addEventListener('input', renderPicker);
  $('language-filter').addEventListener('change', renderPicker);
  $('voice').addEventListener('change', () => { $('voice').dataset.want = $('voice').value; markSelected(); });
  $('voice-search').addEventListener('keydown', (event) => {
    if (event.key === 'ArrowDown' || event.key === 'Enter') { event.preventDefault(); $('voice').focus(); }
  });

  return { reload };
}

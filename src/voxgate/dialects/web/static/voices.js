// Voices: the picker (search by name or language), the table grouped by engine and language with preview and
// delete, adding from a file or the mic.

import { ApiError, api, errorMessage, getJson } from './api.js';
import { Playback } from './player.js';

const $ = (id) => document.getElementById(id);
const MAX_RECORDING = 30; // seconds: the server refuses longer references
const MIN_RECORDING = 1; // seconds: and shorter ones
const CONFIRM_FOR = 5000; // ms a "Delete?" button waits for the second press
const FOLDED = new Set(['espeak']); // engines whose group starts closed: espeak-ng alone has 140 voices
const FIRST = ['registered', 'piper', 'kokoro'];
const ENGINE_NAMES = { piper: 'Piper', kokoro: 'Kokoro-82M', espeak: 'espeak-ng' };
// What Preview says, by the voice's language (its first subtag). Elsewhere numbers, which every engine
// reads in the voice's own language, where an English sentence might be read by English rules.
const SAMPLES = {
  en: 'Hello! This is how I sound.',
  ja: 'こんにちは、これが私の声です。',
  zh: '你好，这是我的声音。',
  cmn: '你好，这是我的声音。',
  yue: '你好，呢個係我嘅聲音。',
  ko: '안녕하세요, 제 목소리입니다.',
  de: 'Hallo, so klinge ich.',
  fr: 'Bonjour, voici ma voix.',
  es: 'Hola, así suena mi voz.',
  it: 'Ciao, questa è la mia voce.',
  pt: 'Olá, esta é a minha voz.',
  nl: 'Hallo, zo klink ik.',
  ru: 'Здравствуйте, так звучит мой голос.',
  pl: 'Dzień dobry, tak brzmi mój głos.',
};
const NUMBERS = '1, 2, 3, 4, 5.';

/** The short text Preview speaks in `voice`. */
export function sampleText(voice) {
  const language = (voice.language || '').toLowerCase().split(/[-_]/)[0];
  return SAMPLES[language] || NUMBERS;
}

/** Voices → [{key, title, voices}] by engine (registered voices first, as their own group), each sorted by
 * language then id. */
export function groupVoices(voices) {
  const groups = new Map();
  for (const voice of voices) {
    const key = voice.kind === 'registered' ? 'registered' : voice.engine || 'other';
    if (!groups.has(key)) groups.set(key, []);
    groups.get(key).push(voice);
  }
  // Registered voices first, then the bundled engines, any other, and the folded ones last.
  const order = (key) => (FIRST.includes(key) ? FIRST.indexOf(key) : FIRST.length + (FOLDED.has(key) ? 1 : 0));
  return [...groups].sort(([a], [b]) => order(a) - order(b) || a.localeCompare(b)).map(([key, list]) => ({
    key,
    title: key === 'registered' ? 'Registered' : ENGINE_NAMES[key] || key,
    voices: list.slice().sort((x, y) => (x.language || '').localeCompare(y.language || '') || x.id.localeCompare(y.id)),
  }));
}

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
      select.replaceChildren(...groupVoices(shown).map((group) => {
        const optgroup = document.createElement('optgroup');
        optgroup.label = `${group.title} (${group.voices.length})`;
        optgroup.append(...group.voices.map((v) => new Option(label(v), v.id)));
        return optgroup;
      }));
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
    for (const row of $('voice-table').querySelectorAll('tr[data-id]')) {
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

  // ---- preview ---------------------------------------------------------------------------------------------

  let previewing = null; // {voice, button, note, controller, playback} of the sample playing now

  function endPreview(message = '') {
    if (!previewing) return;
    const { button, note, controller, playback } = previewing;
    previewing = null;
    controller.abort();
    playback.close();
    button.textContent = '▶ Preview';
    button.setAttribute('aria-pressed', 'false');
    note.textContent = message;
    note.classList.remove('bad');
  }

  /** Speak the sample in `voice`, streamed into the preview player (a second press stops it). */
  async function preview(voice, button, note) {
    const again = previewing?.button === button;
    endPreview();
    if (again) return;
    const controller = new AbortController();
    const audio = $('preview-player');
    if (audio.src.startsWith('blob:')) URL.revokeObjectURL(audio.src);
    const playback = new Playback(audio, 'mp3', {
      // (an earlier, stopped preview's listener may fire when this one plays: only the current one speaks)
      onFirstAudio: () => { if (previewing?.playback === playback) note.textContent = `Playing “${sampleText(voice)}”`; },
      onEnded: () => { if (previewing?.playback === playback) endPreview(); },
    });
    previewing = { voice, button, note, controller, playback };
    button.textContent = '■ Stop';
    button.setAttribute('aria-pressed', 'true');
    note.textContent = 'Loading the voice…';
    try {
      await playback.open();
      const response = await api('/v1/audio/speech', {
        method: 'POST', headers: { 'Content-Type': 'application/json' }, signal: controller.signal,
        body: JSON.stringify({ model: 'tts-1', voice: voice.id, input: sampleText(voice), response_format: 'mp3' }),
      });
      if (!response.ok) throw new ApiError(await errorMessage(response), response.status);
      playback.beginPart();
      const reader = response.body.getReader();
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        await playback.push(value);
      }
      await playback.finish();
    } catch (error) {
      if (controller.signal.aborted) return;
      endPreview(`Could not preview: ${error.message}`);
      note.classList.add('bad');
    }
  }

  function smallButton(text, labelText, onClick) {
    const button = document.createElement('button');
    button.type = 'button';
    button.className = 'small';
    button.textContent = text;
    button.setAttribute('aria-label', labelText);
    button.addEventListener('click', onClick);
    return button;
  }

  function voiceRow(voice) {
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
        className: 'id',
        textContent: `registered from ${voice.duration ?? '?'} s of audio, on ${voice.base_voice}${similarity}`,
      }));
    }
    const note = Object.assign(document.createElement('span'), { className: 'preview-note' });
    note.setAttribute('role', 'status');
    name.append(note);
    const actions = document.createElement('td');
    actions.className = 'actions';
    const previewButton = smallButton('▶ Preview', `Preview voice ${voice.id}`, () => preview(voice, previewButton, note));
    previewButton.classList.add('preview');
    previewButton.setAttribute('aria-pressed', 'false');
    actions.append(previewButton, ' ', smallButton('Use', `Use voice ${voice.id}`, () => use(voice.id)));
    if (voice.kind === 'registered') actions.append(' ', deleteButton(voice));
    row.append(name, actions);
    return row;
  }

  /** One table per group; a <tbody> per language whose first cell spans its voices. */
  function groupTable(group) {
    const table = document.createElement('table');
    table.className = 'voice-list';
    const head = table.createTHead().insertRow();
    for (const [text, hidden] of [['Language', false], ['Voice', false], ['Actions', true]]) {
      const th = document.createElement('th');
      th.scope = 'col';
      if (hidden) th.append(Object.assign(document.createElement('span'), { className: 'sr-only', textContent: text }));
      else th.textContent = text;
      head.append(th);
    }
    const byLanguage = new Map();
    for (const voice of group.voices) {
      const language = voice.language || '–';
      if (!byLanguage.has(language)) byLanguage.set(language, []);
      byLanguage.get(language).push(voice);
    }
    for (const [language, list] of byLanguage) {
      const body = table.createTBody();
      body.dataset.language = language;
      list.forEach((voice, i) => {
        const row = voiceRow(voice);
        if (i === 0) {
          const th = document.createElement('th');
          th.scope = 'rowgroup';
          th.rowSpan = list.length;
          th.className = 'language';
          th.textContent = language;
          row.prepend(th);
        }
        body.append(row);
      });
    }
    return table;
  }

  function renderTable() {
    const open = new Map([...$('voice-table').querySelectorAll('details')].map((d) => [d.dataset.group, d.open]));
    const groups = groupVoices(voices).map((group) => {
      const details = document.createElement('details');
      details.className = 'voice-group';
      details.dataset.group = group.key;
      details.open = open.get(group.key) ?? !FOLDED.has(group.key); // a reload keeps what the person opened
      const languages = new Set(group.voices.map((v) => v.language || '–')).size;
      const summary = document.createElement('summary');
      summary.append(Object.assign(document.createElement('span'), { className: 'group-name', textContent: group.title }),
        ' ', Object.assign(document.createElement('span'), {
          className: 'hint',
          textContent: `${group.voices.length} voice${group.voices.length === 1 ? '' : 's'}`
            + `, ${languages} language${languages === 1 ? '' : 's'}`,
        }));
      const wrap = document.createElement('div');
      wrap.className = 'table-wrap';
      wrap.append(groupTable(group));
      details.append(summary, wrap);
      return details;
    });
    $('voice-table').replaceChildren(...groups);
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

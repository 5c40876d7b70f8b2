// The voxgate page: wires the form controls to the server's public APIs.

import { ApiError, api, errorMessage, keyDeclined, openKeyDialog, shortList } from './api.js';
import { CONCATENABLE, Playback } from './player.js';
import { ReadAlong, pumpEvents } from './readalong.js';
import { findVoice, parseScript, pitchRatio, pitchSemitones, serverScript, speedFactor } from './script.js';
import { readStatus, renderStatus } from './status.js';
import { setupVoices } from './voices.js';

const $ = (id) => document.getElementById(id);
const STATUS_EVERY = 5000; // ms between status refreshes while the page is visible

let voices = [];

function show(el, message) {
  el.textContent = message || '';
  el.hidden = !message;
}

function busy(progress, on) {
  progress.hidden = !on;
}

function stamp() {
  return new Date().toISOString().slice(0, 19).replace(/[-:]/g, '').replace('T', '-');
}

function kb(bytes) {
  return bytes < 1024 * 1024 ? `${(bytes / 1024).toFixed(1)} KB` : `${(bytes / 1048576).toFixed(2)} MB`;
}

function setDownload(link, blob, name) {
  if (link.href.startsWith('blob:')) URL.revokeObjectURL(link.href);
  link.href = URL.createObjectURL(blob);
  link.download = name;
  link.classList.remove('disabled');
  link.removeAttribute('aria-disabled');
  link.textContent = `Download ${name.split('.').pop()} (${kb(blob.size)})`;
}

function clearDownload(link) {
  if (link.href.startsWith('blob:')) URL.revokeObjectURL(link.href);
  link.removeAttribute('href');
  link.classList.add('disabled');
  link.setAttribute('aria-disabled', 'true');
  link.textContent = 'Download';
}

/** One player area (Speak or Script): runs a playback, shows progress, errors and the download. */
class Area {
  constructor(prefix, audio, start, stop, download) {
    this.status = $(`${prefix}-status`);
    this.error = $(`${prefix}-error`);
    this.progress = $(`${prefix}-progress`);
    this.audio = audio;
    this.start = start;
    this.stop = stop;
    this.download = download;
    this.controller = null;
    this.playback = null;
    stop.addEventListener('click', () => this.cancel('Stopped.'));
  }

  cancel(message) {
    if (this.controller) this.controller.abort();
    if (this.playback) this.playback.close();
    this.stop.disabled = true;
    if (message) this.status.textContent = message;
  }

  /** Run `produce(playback, signal, received)` (it streams responses into the playback). */
  async run(format, produce) {
    this.cancel();
    if (this.playback) this.playback.release();
    show(this.error, '');
    clearDownload(this.download);
    const controller = new AbortController();
    this.controller = controller;
    const began = performance.now();
    let bytes = 0;
    let firstAudio = null;
    let notice = '';
    const update = (note) => {
      const parts = [note, `${kb(bytes)} received`];
      if (notice) parts.push(notice);
      if (firstAudio !== null) parts.push(`first audio after ${firstAudio} ms`);
      this.status.textContent = parts.filter(Boolean).join(' · ');
    };
    const playback = new Playback(this.audio, format, {
      onFirstAudio: () => { firstAudio = Math.round(performance.now() - began); update('Playing'); },
      onEnded: () => {
        if (this.playback !== playback || controller.signal.aborted) return;
        this.stop.disabled = true;
        update('Finished');
      },
    });
    this.playback = playback;
    const received = (n, note = firstAudio === null ? 'Waiting for audio' : 'Playing') => { bytes += n; update(note); };
    this.stop.disabled = false;
    this.start.disabled = true;
    busy(this.progress, true);
    update('Sending');
    try {
      await playback.open();
      await produce(playback, controller.signal, received, (text) => { notice = text; });
      const blob = await playback.finish();
      setDownload(this.download, blob, `voxgate-${stamp()}.${format}`);
      update(playback.mode === 'buffered' ? 'Received; playing' : 'Received');
    } catch (error) {
      playback.close();
      if (controller.signal.aborted) this.status.textContent = 'Stopped.';
      else { show(this.error, error.message || String(error)); this.status.textContent = ''; }
    } finally {
      busy(this.progress, false);
      this.start.disabled = false;
      // Stop stays usable while the audio plays on after the download finished.
      if (this.playback === playback && (playback.closed || playback.ended)) this.stop.disabled = true;
    }
  }
}

/** Stream one response's body into the playback. */
async function pump(response, playback, received) {
  if (!response.ok) throw new ApiError(await errorMessage(response), response.status);
  playback.beginPart();
  const reader = response.body.getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) return;
    received(value.byteLength);
    await playback.push(value);
  }
}

/** POST /v1/audio/speech; a server that rejects `pitch` is asked again without it (and told so). */
async function speech(body, signal, note) {
  const post = (payload) => api('/v1/audio/speech', {
    method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(payload), signal,
  });
  let response = await post(body);
  if ((response.status === 400 || response.status === 422) && body.pitch !== undefined) {
    const message = await response.clone().text();
    if (/pitch/i.test(message)) {
      const { pitch, ...rest } = body;
      note(`This server does not take pitch; spoken without the shift (ratio ${pitch}).`);
      response = await post(rest);
    }
  }
  return response;
}

// ---- Speak ------------------------------------------------------------------------------------------------

const speakArea = new Area('speak', $('player'), $('speak-button'), $('stop-button'), $('download'));
const readAlong = new ReadAlong($('read-along'), $('read-along-note'));

function knobs() {
  return { speed: Number($('speed').value), pitch: Number($('pitch').value) };
}

async function speak() {
  const text = $('text').value.trim();
  if (!text) { show(speakArea.error, 'Type some text first.'); $('text').focus(); return; }
  const voice = $('voice').value;
  if (!voice) { show(speakArea.error, 'Pick a voice first.'); $('voice-search').focus(); return; }
  const format = $('format').value;
  const { speed, pitch } = knobs();
  const body = { model: 'tts-1', input: text, voice, response_format: format, speed };
  if (pitch !== 0) body.pitch = pitchRatio(pitch); // the slider is in semitones, the API takes a ratio
  const follow = $('read-along-on').checked;
  if (follow) Object.assign(body, { stream_format: 'sse', timestamps: true }); // words beside the audio
  readAlong.reset(follow ? text : '');
  await speakArea.run(format, async (playback, signal, received, note) => {
    const response = await speech(body, signal, note);
    const events = (response.headers.get('content-type') || '').startsWith('text/event-stream');
    if (!response.ok || !events) { await pump(response, playback, received); return; }
    readAlong.follow(playback);
    await pumpEvents(response, playback, received, (word) => readAlong.add(word));
  });
}

$('speak-form').addEventListener('submit', (event) => { event.preventDefault(); speak(); });
$('text').addEventListener('keydown', (event) => {
  if (event.key === 'Enter' && (event.ctrlKey || event.metaKey)) { event.preventDefault(); speak(); }
});
const countText = () => { $('text-count').textContent = `${$('text').value.length} characters`; };
$('text').addEventListener('input', countText);
countText();

const showKnobs = () => {
  const { speed, pitch } = knobs();
  $('speed-out').textContent = `${speed.toFixed(2)}×`;
  $('pitch-out').textContent = `${pitch > 0 ? '+' : ''}${pitch} st`;
};
$('speed').addEventListener('input', showKnobs);
$('pitch').addEventListener('input', showKnobs);
$('reset-knobs').addEventListener('click', () => { $('speed').value = 1; $('pitch').value = 0; showKnobs(); });
showKnobs();

// ---- Multi-speaker script ---------------------------------------------------------------------------------

const scriptArea = new Area('script', $('script-player'), $('script-button'), $('script-stop'),
  $('script-download'));

function renderLines(lines, current = -1) {
  const items = lines.map((line, i) => {
    const li = document.createElement('li');
    const who = document.createElement('span');
    who.className = 'who';
    who.textContent = line.role || `(${$('voice').value || 'default voice'})`;
    li.append(who, ' ', line.text);
    const knobsText = [line.pitch !== null && `pitch ${line.pitch}`, line.speed !== null && `speed ${line.speed}`]
      .filter(Boolean).join(', ');
    if (knobsText) li.append(' ', Object.assign(document.createElement('span'), { className: 'knobs', textContent: knobsText }));
    if (line.problems.length) li.classList.add('bad');
    if (i === current) { li.classList.add('current'); li.setAttribute('aria-current', 'true'); }
    if (current >= 0 && i < current) li.classList.add('done');
    return li;
  });
  $('script-lines').replaceChildren(...items);
}

function checkScript(lines) {
  const problems = [];
  lines.forEach((line, i) => {
    line.problems.forEach((p) => problems.push(`Line ${i + 1}: ${p}.`));
    if (line.role && !findVoice(voices, line.role)) {
      line.problems.push('unknown role');
      problems.push(`Line ${i + 1}: unknown role "${line.role}". Roles: ${shortList(voices.map((v) => v.id))}.`);
    }
  });
  return problems;
}

/** Follow what is being heard: highlight the line whose audio span holds the playback position. */
function follow(playback, lines, ends) {
  const timer = setInterval(() => {
    if (playback.closed) { clearInterval(timer); return; }
    if (playback.ended) { renderLines(lines, lines.length); clearInterval(timer); return; }
    const at = playback.position();
    const index = ends.findIndex((end) => at < end);
    renderLines(lines, index < 0 ? (playback.done ? lines.length : ends.length) : index);
    if (playback.done && index < 0) clearInterval(timer);
  }, 200);
}

async function speakScript() {
  const source = $('script').value;
  const lines = parseScript(source);
  if (!lines.length) { show(scriptArea.error, 'Write a script first.'); $('script').focus(); return; }
  const problems = checkScript(lines);
  renderLines(lines);
  if (problems.length) { show(scriptArea.error, problems.join('\n')); return; }
  const picked = $('voice').value;
  let format = $('format').value;
  if (!CONCATENABLE.has(format)) format = 'mp3'; // several lines need a format that can be joined
  await scriptArea.run(format, async (playback, signal, received, note) => {
    const response = await api('/multi_speak', {
      method: 'POST', headers: { 'Content-Type': 'application/json' }, signal,
      body: JSON.stringify({ text: serverScript(source, picked), response_format: format, stream: true }),
    });
    if (response.status !== 404 && response.status !== 405) {
      await pump(response, playback, received); // the server speaks the whole script, in order
      return;
    }
    // No /multi_speak on this server: one /v1/audio/speech per line, appended in order.
    const ends = [];
    follow(playback, lines, ends);
    for (const line of lines) {
      const voice = line.role ? findVoice(voices, line.role).id : picked;
      const body = { model: 'tts-1', input: line.text, voice, response_format: format,
        speed: speedFactor(line.speed) };
      const semitones = pitchSemitones(line.pitch);
      if (semitones) body.pitch = pitchRatio(semitones);
      await pump(await speech(body, signal, note), playback, received);
      ends.push(await playback.mark());
    }
  });
}

$('script-button').addEventListener('click', speakScript);
$('script').addEventListener('keydown', (event) => {
  if (event.key === 'Enter' && (event.ctrlKey || event.metaKey)) { event.preventDefault(); speakScript(); }
});
$('script').addEventListener('input', () => renderLines(parseScript($('script').value)));
$('role-insert-button').addEventListener('click', () => {
  const area = $('script');
  const tag = `<role:${$('role-insert').value}>`;
  const at = area.selectionStart ?? area.value.length;
  const before = area.value.slice(0, at);
  const prefix = before && !before.endsWith('\n') ? '\n' : '';
  area.setRangeText(prefix + tag, at, area.selectionEnd ?? at, 'end');
  area.focus();
  renderLines(parseScript(area.value));
});

// ---- Voices, status, key ----------------------------------------------------------------------------------

const voiceUi = setupVoices({
  onVoices: (list) => {
    voices = list;
    const insert = $('role-insert');
    const keep = insert.value;
    insert.replaceChildren(...list.map((v) => new Option(`${v.name || v.id} (${v.language || '?'})`, v.id)));
    if (keep && list.some((v) => v.id === keep)) insert.value = keep;
    if (!$('script').value) {
      const ids = list.map((v) => v.id);
      $('script').value = `Welcome to the show.\n<role:${ids[0]}>Hello, I am the first speaker.\n`
        + `<role:${ids[ids.length - 1]},pitch:high>And I answer a little higher.`;
    }
    renderLines(parseScript($('script').value));
    refreshStatus();
  },
});

async function refreshStatus() {
  const pill = $('ready-pill');
  $('key-button').classList.toggle('attention', keyDeclined());
  try {
    const status = await readStatus();
    renderStatus(status, voices);
    const state = status.ready?.status || (status.health === 'ok' ? 'up' : 'down');
    pill.textContent = state === 'ready' ? 'ready' : state;
    pill.className = `pill ${state === 'ready' ? 'ok' : 'warn'}`;
    show($('status-error'), '');
    $('status-updated').textContent = `Updated ${new Date().toLocaleTimeString()}.`;
  } catch (error) {
    pill.textContent = error.status === 401 ? 'key needed' : 'unreachable';
    pill.className = 'pill bad';
    show($('status-error'), error.status === 401 ? error.message : `Cannot reach the server: ${error.message}`);
  }
  $('key-button').classList.toggle('attention', keyDeclined());
}

$('status-refresh').addEventListener('click', refreshStatus);
setInterval(() => { if (document.visibilityState === 'visible') refreshStatus(); }, STATUS_EVERY);

$('key-button').addEventListener('click', async () => {
  const action = await openKeyDialog('Set the API key this page sends (Authorization: Bearer).');
  if (action !== 'cancel') {
    show($('voices-error'), '');
    voiceUi.reload().catch((error) => show($('voices-error'), error.message));
  }
  refreshStatus();
});

voiceUi.reload().catch((error) => { show($('voices-error'), error.message); refreshStatus(); });


// Playing audio while it still streams in, one or more responses back to back.
//
// mp3 goes through Media Source Extensions into the <audio> element: Chromium, Firefox and Safari all accept
// `audio/mpeg` in MSE, mp3 frames need no container, and responses can be appended one after another
// ("sequence" mode stamps them end to end). pcm (raw 24 kHz 16-bit) and wav go through Web Audio: samples
// are scheduled as they arrive, which works in every browser without any codec. Other formats (opus in
// Ogg, flac, aac where MSE lacks it) cannot be appended piecewise portably, so they play once complete.

export const MIME = {
  mp3: 'audio/mpeg', opus: 'audio/ogg', aac: 'audio/aac', flac: 'audio/flac', wav: 'audio/wav', pcm: 'audio/L16',
};
export const PCM_RATE = 24000; // Hertz: OpenAI's documented rate for `pcm`, which voxgate uses

/** How a format is played: 'mse' and 'webaudio' start before the response ends, 'buffered' after. */
export function playbackMode(format) {
  if (format === 'pcm' || format === 'wav') return window.AudioContext ? 'webaudio' : 'buffered';
  const mse = window.MediaSource;
  if ((format === 'mp3' || format === 'aac') && mse && mse.isTypeSupported(MIME[format])) return 'mse';
  return 'buffered';
}

/** Formats whose responses can be concatenated into one stream (for several script lines). */
export const CONCATENABLE = new Set(['mp3', 'pcm', 'wav', 'aac']);

function once(target, event) {
  return new Promise((resolve, reject) => {
    target.addEventListener(event, resolve, { once: true });
    if (event !== 'error') target.addEventListener('error', () => reject(new Error(`${event} failed`)), { once: true });
  });
}

/** A WAV file (true sizes) around 16-bit mono PCM. */
export function wavFile(pcmParts, rate) {
  const bytes = pcmParts.reduce((n, p) => n + p.byteLength, 0);
  const header = new DataView(new ArrayBuffer(44));
  const put = (offset, text) => [...text].forEach((c, i) => header.setUint8(offset + i, c.charCodeAt(0)));
  put(0, 'RIFF'); header.setUint32(4, 36 + bytes, true); put(8, 'WAVE');
  put(12, 'fmt '); header.setUint32(16, 16, true); header.setUint16(20, 1, true); header.setUint16(22, 1, true);
  header.setUint32(24, rate, true); header.setUint32(28, rate * 2, true);
  header.setUint16(32, 2, true); header.setUint16(34, 16, true);
  put(36, 'data'); header.setUint32(40, bytes, true);
  return new Blob([header.buffer, ...pcmParts], { type: 'audio/wav' });
}

/** One playback: open(), then for each response beginPart() / push(bytes)… , then finish() → Blob. */
export class Playback {
  constructor(audio, format, { onFirstAudio = () => {}, onEnded = () => {} } = {}) {
    this.audio = audio;
    this.format = format;
    this.mode = playbackMode(format);
    this.parts = []; // every byte received, for the download (and for buffered playback)
    this.pcm = []; // Web Audio: 16-bit samples without headers
    this.rate = PCM_RATE;
    this.onFirstAudio = onFirstAudio;
    this.started = false;
    this.closed = false;
    this.ended = false;
    this.onEnded = () => { this.ended = true; onEnded(); };
  }

  async open() {
    const audio = this.audio;
    audio.pause();
    audio.removeAttribute('src');
    audio.load();
    audio.addEventListener('playing', () => this.firstAudio(), { once: true });
    if (this.mode === 'mse') {
      this.source = new MediaSource();
      this.url = URL.createObjectURL(this.source);
      audio.src = this.url;
      await once(this.source, 'sourceopen');
      this.buffer = this.source.addSourceBuffer(MIME[this.format]);
      try { this.buffer.mode = 'sequence'; } catch { /* already the only mode for audio/mpeg */ }
      this.tryPlay();
    } else if (this.mode === 'webaudio') {
      this.context = new AudioContext();
      await this.context.resume();
      this.nextTime = 0;
      this.sources = new Set();
      this.scheduled = []; // {at: context time, stream: seconds of audio before it, duration}
      this.streamed = 0;
    }
  }

  firstAudio() {
    if (!this.started) { this.started = true; this.onFirstAudio(); }
  }

  tryPlay() {
    this.audio.play().catch((error) => {
      if (error.name === 'NotAllowedError') this.audio.dataset.blocked = 'true'; // the person presses play
    });
  }

  beginPart() {
    this.header = this.format === 'wav' ? new Uint8Array(0) : null; // wav: the header is read first
    this.odd = null; // a sample split between two network chunks
  }

  async push(bytes) {
    if (this.closed) return;
    this.parts.push(bytes);
    if (this.mode === 'mse') await this.append(bytes);
    else if (this.mode === 'webaudio') this.schedule(bytes);
  }

  async append(bytes) {
    const buffer = this.buffer;
    if (buffer.updating) await once(buffer, 'updateend');
    try {
      buffer.appendBuffer(bytes);
    } catch (error) {
      if (error.name !== 'QuotaExceededError' || this.audio.currentTime < 20) throw error;
      buffer.remove(0, this.audio.currentTime - 10); // drop what has been heard, keep a little to seek back
      await once(buffer, 'updateend');
      buffer.appendBuffer(bytes);
    }
    await once(buffer, 'updateend');
  }

  /** Web Audio: strip a WAV header, turn 16-bit samples into a buffer, queue it after the previous one. */
  schedule(bytes) {
    let data = bytes;
    if (this.header) {
      data = this.readWavHeader(data);
      if (!data) return;
    }
    if (this.odd) {
      const joined = new Uint8Array(this.odd.length + data.length);
      joined.set(this.odd); joined.set(data, this.odd.length);
      data = joined;
      this.odd = null;
    }
    if (data.length % 2) { this.odd = data.slice(data.length - 1); data = data.slice(0, data.length - 1); }
    if (!data.length) return;
    const samples = new Int16Array(data.buffer.slice(data.byteOffset, data.byteOffset + data.length));
    this.pcm.push(samples.buffer);
    const floats = new Float32Array(samples.length);
    for (let i = 0; i < samples.length; i += 1) floats[i] = samples[i] / 32768;
    const ctx = this.context;
    const buffer = ctx.createBuffer(1, floats.length, this.rate);
    buffer.copyToChannel(floats, 0);
    const node = ctx.createBufferSource();
    node.buffer = buffer;
    node.connect(ctx.destination);
    // Start a little ahead after a gap, so a late network chunk resumes cleanly instead of clipping.
    const at = Math.max(this.nextTime, ctx.currentTime + 0.08);
    node.start(at);
    // Where this buffer sits on the audio's own time axis (the read-along's seconds), despite any gap.
    this.scheduled.push({ at, stream: this.streamed, duration: buffer.duration });
    this.streamed += buffer.duration;
    this.nextTime = at + buffer.duration;
    this.sources.add(node);
    node.onended = () => { this.sources.delete(node); if (this.done && !this.sources.size) this.onEnded(); };
    this.firstAudio();
  }

  /** Accumulate until the WAV `data` chunk starts; returns the samples after it, or null for "need more". */
  readWavHeader(bytes) {
    const joined = new Uint8Array(this.header.length + bytes.length);
    joined.set(this.header); joined.set(bytes, this.header.length);
    const view = new DataView(joined.buffer);
    const tag = (at) => String.fromCharCode(...joined.subarray(at, at + 4));
    if (joined.length >= 12 && (tag(0) !== 'RIFF' || tag(8) !== 'WAVE')) throw new Error('the server sent a WAV without a RIFF header');
    let at = 12;
    while (at + 8 <= joined.length) {
      const size = view.getUint32(at + 4, true);
      if (tag(at) === 'fmt ' && at + 16 <= joined.length) this.rate = view.getUint32(at + 12, true);
      if (tag(at) === 'data') {
        this.header = null;
        return joined.subarray(at + 8);
      }
      at += 8 + size + (size % 2);
    }
    this.header = joined;
    return null;
  }

  /** Where playback is now, in the same seconds as mark(). */
  position() {
    return this.mode === 'webaudio' ? this.context.currentTime : this.audio.currentTime;
  }

  /** How far into the audio playback is, in seconds of the audio itself (gaps Web Audio had to leave for a
   * late network chunk do not count): the clock word timings are on. */
  streamTime() {
    if (this.mode !== 'webaudio') return this.audio.currentTime;
    const now = this.context.currentTime;
    let time = 0;
    for (const part of this.scheduled) {
      if (now < part.at) break;
      time = part.stream + Math.min(now - part.at, part.duration);
    }
    return time;
  }

  /** The end of the audio appended so far (call after a part, to know where the next one starts). */
  async mark() {
    if (this.mode === 'webaudio') return this.nextTime;
    if (this.mode !== 'mse') return 0;
    if (this.buffer.updating) await once(this.buffer, 'updateend');
    const ranges = this.buffer.buffered;
    return ranges.length ? ranges.end(ranges.length - 1) : 0;
  }

  /** All responses are in: end the stream, return the downloadable file. */
  async finish() {
    this.done = true;
    if (this.mode === 'mse') {
      if (this.buffer.updating) await once(this.buffer, 'updateend');
      if (this.source.readyState === 'open') this.source.endOfStream();
      this.audio.addEventListener('ended', () => this.onEnded(), { once: true });
    } else if (this.mode === 'buffered') {
      this.url = URL.createObjectURL(new Blob(this.parts, { type: MIME[this.format] }));
      this.audio.src = this.url;
      this.audio.addEventListener('ended', () => this.onEnded(), { once: true });
      this.tryPlay();
    } else if (this.mode === 'webaudio') {
      // The element gets the same audio as a file, to replay and scrub once Web Audio has played it.
      this.url = URL.createObjectURL(wavFile(this.pcm, this.rate));
      this.audio.src = this.url;
      if (!this.sources.size) this.onEnded();
    }
    return this.download();
  }

  /** The file to download: what the server sent, or one WAV for several WAV responses. */
  download() {
    if (this.format === 'wav' && this.parts.length) return wavFile(this.pcm, this.rate);
    return new Blob(this.parts, { type: MIME[this.format] });
  }

  /** Stop playing and release everything. */
  close() {
    this.closed = true;
    this.audio.pause();
    if (this.context) this.context.close().catch(() => {});
    if (this.source && this.source.readyState === 'open') {
      try { this.source.endOfStream(); } catch { /* already ending */ }
    }
  }

  /** Forget the object URL once a newer playback replaced this one. */
  release() {
    if (this.url) URL.revokeObjectURL(this.url);
  }
}

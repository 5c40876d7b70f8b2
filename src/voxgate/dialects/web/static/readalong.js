// Read-along: the text being spoken, each word highlighted while it is heard.
//
// The words come from /v1/audio/speech with `stream_format: "sse"` and voxgate's `timestamps: true`:
// `speech.word` events name a span of the text that was sent (start_char/end_char, counted in Unicode code
// points) and when it is said (start/end, seconds from the start of the audio). The audio deltas go to the
// player as before; a server that answers plain audio (no SSE) still plays, with no words to follow.

const LATE = 0.3; // seconds a word stays lit after its end, so short gaps between words do not flicker
const TICK = 40; // ms between position checks

/** Stream an SSE speech response into `playback`, calling `onWord` for each word event. */
export async function pumpEvents(response, playback, received, onWord) {
  playback.beginPart();
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = '';
  const handle = async (block) => {
    const data = block.split('\n').filter((line) => line.startsWith('data:'))
      .map((line) => line.slice(5).replace(/^ /, '')).join('\n');
    if (!data) return;
    const event = JSON.parse(data);
    if (event.type === 'speech.audio.delta') {
      const bytes = Uint8Array.from(atob(event.audio), (c) => c.charCodeAt(0));
      received(bytes.byteLength);
      await playback.push(bytes);
    } else if (event.type === 'speech.word') {
      onWord(event);
    } else if (event.type === 'error') {
      throw new Error(event.error?.message || 'the server stopped the stream');
    }
  };
  for (;;) {
    const { done, value } = await reader.read();
    buffer += decoder.decode(value || new Uint8Array(0), { stream: !done });
    const blocks = buffer.split(/\r?\n\r?\n/);
    buffer = done ? '' : blocks.pop();
    for (const block of blocks) await handle(block);
    if (done) return;
  }
}

const ENTITIES = { amp: '&', lt: '<', gt: '>', quot: '"', apos: "'" };

/**
 * The code points of `text` as a reader sees them, one entry each (offsets stay the server's; an entry may be
 * empty): an SSML document's tags shown as nothing (one space where a tag alone parts two words, as
 * `a<break/>b`), an entity as its character; other text as it is. The server's captions read the document
 * the same way (text/shown.py).
 */
export function shownChars(text) {
  const chars = Array.from(text);
  if (!/^\s*(<\?xml[^>]*>\s*)?<speak[\s>/]/.test(text)) return chars;
  const out = chars.slice();
  let before = ''; // the last character shown so far
  for (let i = 0; i < chars.length; i += 1) {
    if (chars[i] === '<') {
      const close = chars.indexOf('>', i);
      if (close < 0) break;
      for (let k = i; k <= close; k += 1) out[k] = '';
      if (before && !/\s/.test(before) && /[\p{L}\p{N}]/u.test(chars[close + 1] || '')) out[i] = ' ';
      before = out[i] || before;
      i = close;
      continue;
    }
    if (chars[i] === '&') {
      const end = chars.indexOf(';', i);
      const name = end > i ? chars.slice(i + 1, end).join('') : '';
      if (!/^(#x[0-9a-f]+|#[0-9]+|[a-z]+)$/i.test(name)) continue;
      let char = ENTITIES[name];
      if (name[0] === '#') {
        const code = name[1] === 'x' || name[1] === 'X' ? parseInt(name.slice(2), 16) : parseInt(name.slice(1), 10);
        char = code > 0 && code < 0x110000 && !(code >= 0xd800 && code < 0xe000) ? String.fromCodePoint(code) : undefined;
      }
      out[i] = char === undefined ? ' ' : char;
      for (let k = i + 1; k <= end; k += 1) out[k] = char === undefined ? ' ' : '';
      i = end;
    }
    before = out[i] || before;
  }
  return out;
}

/** The read-along panel: the text, split into word spans as their timings arrive, lit as they are heard. */
export class ReadAlong {
  constructor(element, note) {
    this.element = element;
    this.note = note;
    this.timer = null;
    this.reset('');
  }

  /** Show `text` (nothing when read-along is off) and forget the previous words. */
  reset(text) {
    clearInterval(this.timer);
    this.timer = null;
    this.chars = shownChars(text); // code points, as the server counts them (an SSML document's markup out)
    this.words = [];
    this.shown = 0; // characters of the text already placed before `rest`
    this.rest = document.createTextNode(this.chars.join(''));
    this.element.replaceChildren(this.rest);
    this.element.hidden = !text;
    this.note.hidden = true;
  }

  /** A word event: its span of the text becomes a word of its own (words arrive in order). */
  add(event) {
    const start = event.start_char;
    const end = event.end_char;
    if (!(start >= this.shown && end > start && end <= this.chars.length)) return;
    const span = document.createElement('span');
    span.className = 'word';
    span.textContent = this.chars.slice(start, end).join('');
    span.dataset.start = event.start;
    span.dataset.end = event.end;
    const before = document.createTextNode(this.chars.slice(this.shown, start).join(''));
    this.element.insertBefore(before, this.rest);
    this.element.insertBefore(span, this.rest);
    this.shown = end;
    this.rest.textContent = this.chars.slice(end).join('');
    this.words.push({ span, start: Number(event.start), end: Number(event.end) });
  }

  /** Light the word being heard, until the playback ends or is replaced. */
  follow(playback) {
    clearInterval(this.timer);
    let lit = -1;
    const light = (index, heard) => {
      this.words.forEach((word, i) => {
        word.span.classList.toggle('said', i < index || (i === index && !heard));
        const now = i === index && heard;
        word.span.classList.toggle('now', now);
        if (now) word.span.setAttribute('aria-current', 'true'); else word.span.removeAttribute('aria-current');
      });
      if (index !== lit && heard && index >= 0) this.words[index].span.scrollIntoView({ block: 'nearest' });
      lit = heard ? index : -1;
    };
    this.timer = setInterval(() => {
      if (playback.closed || playback.ended) {
        clearInterval(this.timer);
        if (playback.ended) light(this.words.length, false);
        this.note.hidden = this.words.length > 0 || !playback.ended;
        return;
      }
      const at = playback.streamTime();
      let index = -1;
      while (index + 1 < this.words.length && this.words[index + 1].start <= at) index += 1;
      light(index, index >= 0 && at <= this.words[index].end + LATE);
    }, TICK);
  }
}

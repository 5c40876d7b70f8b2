// The multi-speaker script: Flash-TTS `<role:NAME,pitch:P,speed:S>` tags, parsed the way voxgate's
// /multi_speak reads them (text before the first tag is spoken too, in the default voice).

export const LEVELS = ['very_low', 'low', 'moderate', 'high', 'very_high'];
// What a level means when the page speaks a line itself through /v1/audio/speech.
const PITCH_SEMITONES = { very_low: -6, low: -3, moderate: 0, high: 3, very_high: 6 };
const SPEED_FACTOR = { very_low: 0.6, low: 0.8, moderate: 1.0, high: 1.25, very_high: 1.5 };

// The same tag grammar as the server: a name, then ",key:value" attributes (pitch and speed, by level).
const TAG = /<role:([^,>]+)((?:,[^,>]*)*)>/g;

function attributes(tag, raw, problems) {
  const found = {};
  for (const part of raw.split(',').slice(1)) {
    const colon = part.indexOf(':');
    const key = (colon < 0 ? part : part.slice(0, colon)).trim().toLowerCase();
    const value = colon < 0 ? '' : part.slice(colon + 1).trim().toLowerCase();
    if (colon < 0 || (key !== 'pitch' && key !== 'speed')) {
      problems.push(`unknown attribute "${part.trim()}" in ${tag}; use pitch:LEVEL and speed:LEVEL`);
    } else if (key in found) {
      problems.push(`${key} given twice in ${tag}`);
    } else if (!LEVELS.includes(value)) {
      problems.push(`${key} "${value}" in ${tag} is not one of ${LEVELS.join(', ')}`);
    } else {
      found[key] = value;
    }
  }
  return found;
}

/** Lines of {role, pitch, speed, text, problems}; role null = the default voice. */
export function parseScript(source) {
  const lines = [];
  let last = 0;
  let current = { role: null, pitch: null, speed: null, problems: [] };
  const push = (end) => {
    const text = source.slice(last, end).trim();
    if (/[\p{L}\p{N}]/u.test(text)) lines.push({ ...current, text }); // punctuation alone says nothing
  };
  for (const match of source.matchAll(TAG)) {
    push(match.index);
    const problems = [];
    const role = match[1].trim();
    if (!role) problems.push(`empty role name in ${match[0]}`);
    const found = attributes(match[0], match[2], problems);
    current = { role: role || null, pitch: found.pitch ?? null, speed: found.speed ?? null, problems };
    last = match.index + match[0].length;
  }
  push(source.length);
  return lines;
}

/** Semitones for a level (the server's /multi_speak uses the same table). */
export function pitchSemitones(pitch) {
  return pitch === null ? 0 : PITCH_SEMITONES[pitch];
}

/** /v1/audio/speech takes pitch as Flash-TTS does: a frequency ratio, 1.0 unchanged, 2.0 an octave up. */
export function pitchRatio(semitones) {
  return Math.round(2 ** (semitones / 12) * 10000) / 10000;
}

/** A speed factor for /v1/audio/speech from a level. */
export function speedFactor(speed) {
  return speed === null ? 1 : SPEED_FACTOR[speed];
}

/** The voice a role names: by id, display name or alias, ignoring case. */
export function findVoice(voices, role) {
  const wanted = role.toLowerCase();
  return voices.find((v) => v.id.toLowerCase() === wanted)
    || voices.find((v) => (v.name || '').toLowerCase() === wanted)
    || voices.find((v) => (v.aliases || []).some((a) => a.toLowerCase() === wanted));
}

/** The script for /multi_speak, with the default-voice opening given the picked voice explicitly. */
export function serverScript(source, defaultVoice) {
  const first = source.search(/<role:[^,>]+(?:,[^,>]*)*>/);
  const opening = first < 0 ? source : source.slice(0, first);
  return opening.trim() ? `<role:${defaultVoice}>${source}` : source;
}

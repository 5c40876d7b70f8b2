// The server status panel: /health, /ready and the Prometheus text of /metrics, read in the browser.

import { api } from './api.js';

const SAMPLE = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})?\s+(\S+)/;
const LABEL = /(\w+)="((?:[^"\\]|\\.)*)"/g;

/** Prometheus text exposition → [{name, labels, value}]. */
export function parseMetrics(text) {
  const samples = [];
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const match = SAMPLE.exec(line);
    if (!match) continue;
    const labels = {};
    for (const [, key, value] of (match[2] || '').matchAll(LABEL)) labels[key] = value.replace(/\\(.)/g, '$1');
    samples.push({ name: match[1], labels, value: Number(match[3]) });
  }
  return samples;
}

function total(samples, name) {
  return samples.filter((s) => s.name === name).reduce((sum, s) => sum + s.value, 0);
}

/** A quantile from cumulative histogram buckets (upper bound of the bucket that holds it). */
function quantile(samples, name, q) {
  const buckets = samples.filter((s) => s.name === `${name}_bucket`)
    .map((s) => ({ le: Number(s.labels.le === '+Inf' ? Infinity : s.labels.le), count: s.value }))
    .sort((a, b) => a.le - b.le);
  const count = buckets.length ? buckets[buckets.length - 1].count : 0;
  if (!count) return null;
  const bucket = buckets.find((b) => b.count >= q * count);
  return bucket ? bucket.le : null;
}

function ms(seconds) {
  if (seconds === null) return '–';
  return Number.isFinite(seconds) ? `≤ ${Math.round(seconds * 1000)} ms` : '> 5 s';
}

/** Everything the panel shows, from the three endpoints; voices come from the page's own list. */
export async function readStatus() {
  const status = { health: 'down', ready: null, metrics: [] };
  const health = await api('/health');
  status.health = health.ok ? 'ok' : `HTTP ${health.status}`;
  const ready = await api('/ready');
  if (ready.headers.get('content-type')?.includes('json')) status.ready = await ready.json();
  const metrics = await api('/metrics');
  if (metrics.ok) status.metrics = parseMetrics(await metrics.text());
  return status;
}

function entry(list, label, value) {
  const div = document.createElement('div');
  const dt = document.createElement('dt');
  const dd = document.createElement('dd');
  dt.textContent = label;
  dd.textContent = value;
  div.append(dt, dd);
  list.append(div);
}

export function renderStatus(status, voices) {
  const m = status.metrics;
  const ready = status.ready || {};
  const list = document.getElementById('status-list');
  list.replaceChildren();
  entry(list, 'Health', status.health);
  entry(list, 'Ready', ready.status || '–');
  entry(list, 'Default voice', ready.default_voice || '–');
  entry(list, 'Workers', ready.workers ?? '–');
  entry(list, 'Active requests', total(m, 'voxgate_active_requests'));
  entry(list, 'Queue depth', total(m, 'voxgate_queue_depth'));
  entry(list, 'Jobs running', total(m, 'voxgate_jobs_running'));
  entry(list, 'Jobs done', total(m, 'voxgate_jobs_completed'));
  entry(list, 'Jobs failed', total(m, 'voxgate_jobs_failed'));
  entry(list, 'First audio p50', ms(quantile(m, 'voxgate_first_audio_seconds', 0.5)));
  entry(list, 'First audio p95', ms(quantile(m, 'voxgate_first_audio_seconds', 0.95)));
  entry(list, 'Audio produced', `${total(m, 'voxgate_audio_seconds_total').toFixed(1)} s`);
  entry(list, 'Errors', total(m, 'voxgate_errors_total'));
  entry(list, 'Refused (busy)', total(m, 'voxgate_rejected_busy_total'));
  entry(list, 'Cancelled', total(m, 'voxgate_cancelled_total'));

  const engines = new Map();
  for (const voice of voices) engines.set(voice.engine, (engines.get(voice.engine) || 0) + 1);
  const loaded = new Set(ready.voices_loaded || []);
  document.getElementById('engine-list').replaceChildren(...[...engines].map(([engine, count]) => {
    const li = document.createElement('li');
    const warm = voices.filter((v) => v.engine === engine && loaded.has(v.id)).length;
    li.textContent = `${engine}: ${count} voice${count === 1 ? '' : 's'}, ${warm} loaded`;
    return li;
  }));

  const dialects = m.filter((s) => s.name === 'voxgate_requests_total');
  const items = dialects.length ? dialects.map((s) => {
    const li = document.createElement('li');
    const errors = m.filter((e) => e.name === 'voxgate_errors_total' && e.labels.dialect === s.labels.dialect)
      .reduce((sum, e) => sum + e.value, 0);
    li.textContent = `${s.labels.dialect}: ${s.value} request${s.value === 1 ? '' : 's'}, ${errors} error${errors === 1 ? '' : 's'}`;
    return li;
  }) : [Object.assign(document.createElement('li'), { textContent: 'no requests yet' })];
  document.getElementById('dialect-list').replaceChildren(...items);
}

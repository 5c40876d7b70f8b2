// Talking to voxgate: the API key (asked for on the first 401, kept in localStorage) and error messages.

const KEY_STORAGE = 'voxgate.apiKey';
const LIST_SHOWN = 10; // items of a long list an error message shows before "and N more"
let pendingAsk = null; // one dialog for every request that hit 401 at the same moment
// Set when the person cancels the key dialog: no request asks again until they open it themselves (the
// "API key" button). Without it the status refresh's 401 would reopen the dialog every few seconds.
let declined = false;

export class ApiError extends Error {
  constructor(message, status) {
    super(message);
    this.status = status;
  }
}

export function storedKey() {
  try { return localStorage.getItem(KEY_STORAGE) || ''; } catch { return ''; }
}

function storeKey(key) {
  try {
    if (key) localStorage.setItem(KEY_STORAGE, key); else localStorage.removeItem(KEY_STORAGE);
  } catch { /* private mode: the key lives for this page only */ }
  sessionKey = key;
}

let sessionKey = storedKey();

export const KEY_NEEDED = 'This server needs an API key: press "API key" at the top to enter it.';

/** Has the person declined to give a key (Cancel) since they last opened the dialog themselves? */
export function keyDeclined() {
  return declined;
}

/** Show the key dialog; resolves with 'save', 'forget' or 'cancel'. */
export function openKeyDialog(message) {
  if (pendingAsk) return pendingAsk;
  declined = false; // asked (again) by the person or by a request: their answer decides
  const dialog = document.getElementById('key-dialog');
  const input = document.getElementById('key-input');
  document.getElementById('key-message').textContent = message;
  document.getElementById('key-forget').hidden = !sessionKey;
  input.value = sessionKey;
  pendingAsk = new Promise((resolve) => {
    dialog.addEventListener('close', () => {
      const action = dialog.returnValue || 'cancel';
      if (action === 'save') storeKey(input.value.trim());
      if (action === 'forget') storeKey('');
      if (action === 'cancel') declined = true;
      pendingAsk = null;
      resolve(action);
    }, { once: true });
  });
  dialog.returnValue = '';
  dialog.showModal();
  input.focus();
  return pendingAsk;
}

/** fetch() with the key; on 401 ask for a key and try again (until the person cancels, then never again
 * until they press the "API key" button). */
export async function api(path, options = {}) {
  for (;;) {
    const headers = new Headers(options.headers || {});
    if (sessionKey) headers.set('Authorization', `Bearer ${sessionKey}`);
    const response = await fetch(path, { ...options, headers });
    if (response.status !== 401) return response;
    if (declined) throw new ApiError(KEY_NEEDED, 401);
    const message = sessionKey ? 'The server refused this API key. Enter the right one.'
      : 'This server needs an API key.';
    const action = await openKeyDialog(message);
    if (action === 'cancel') throw new ApiError(KEY_NEEDED, 401);
    if (action !== 'save' || !sessionKey) throw new ApiError(`${message} (401)`, 401);
  }
}

/** "a, b, c, … and 140 more": at most `shown` items of a list, for messages people read. */
export function shortList(items, shown = LIST_SHOWN) {
  if (items.length <= shown + 1) return items.join(', ');
  return `${items.slice(0, shown).join(', ')} and ${items.length - shown} more`;
}

/** Shorten every long comma-separated list inside a message (a server may list every voice it has). */
export function shortenLists(message, shown = LIST_SHOWN) {
  return message.replace(/[^\s,;()]+(?:, [^\s,;()]+){11,}/g, (list) => shortList(list.split(', '), shown));
}

/** The human part of an error response in any of voxgate's dialect shapes. */
export async function errorMessage(response) {
  const text = await response.text().catch(() => '');
  let message = '';
  try {
    const body = JSON.parse(text);
    const detail = body.detail;
    if (body.error && typeof body.error === 'object') message = body.error.message;
    else if (typeof body.error === 'string') message = body.error;
    else if (typeof detail === 'string') message = detail;
    else if (Array.isArray(detail)) message = detail.map((d) => `${(d.loc || []).join('.')}: ${d.msg}`).join('; ');
    else if (detail && typeof detail === 'object') message = detail.message || JSON.stringify(detail);
    else if (body.message) message = body.message;
  } catch { message = text.slice(0, 300); }
  return `${shortenLists(message || response.statusText || 'Request failed')} (HTTP ${response.status})`;
}

/** JSON from a GET, or an ApiError with the server's message. */
export async function getJson(path) {
  const response = await api(path);
  if (!response.ok) throw new ApiError(await errorMessage(response), response.status);
  return response.json();
}

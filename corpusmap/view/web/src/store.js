// Data payloads by key ("points", "texts/00003", "index/0012", ...).
// Data scripts call window.corpusmapPut(key, value). A single-file page carries them inline; a page with a
// data folder loads them on demand with <script src> (browsers refuse fetch/XHR of file:// URLs, not scripts).

const values = new Map();
const waiting = new Map();
let folder = null;

export function installStore(win) {
  win.corpusmapPut = put;
}

/** Register a payload (called by the data scripts). */
export function put(key, value) {
  values.set(key, value);
  const w = waiting.get(key);
  if (w) {
    waiting.delete(key);
    w.resolve(value);
  }
}

/** Where lazily loaded data lives (a URL relative to the page), or null when everything is inline. */
export function setFolder(path) {
  folder = path;
}

/** The payload for key: at once if present, else by adding a <script src> for it. */
export function load(key) {
  if (values.has(key)) return Promise.resolve(values.get(key));
  const w = waiting.get(key);
  if (w) return w.promise;
  let resolve;
  let reject;
  const promise = new Promise((res, rej) => {
    resolve = res;
    reject = rej;
  });
  waiting.set(key, { promise, resolve });
  if (!folder) {
    waiting.delete(key);
    return Promise.reject(new Error(`the page has no data "${key}"`));
  }
  const script = document.createElement('script');
  script.src = `${folder}/${key}.js`;
  script.charset = 'utf-8';
  script.async = true;
  const fail = () => {
    waiting.delete(key);
    script.remove();
    reject(new Error(`could not load ${key}.js from ${folder}`));
  };
  script.onerror = fail;
  script.onload = () => {
    script.remove();
    if (!values.has(key)) fail();
  };
  document.head.appendChild(script);
  return promise;
}

/** Whether key is loaded (synchronous look-ups for hover). */
export function peek(key) {
  return values.get(key);
}

/** Forget a payload so that its memory can be reclaimed (only when it can be loaded again). */
export function forget(key) {
  if (folder) values.delete(key);
}

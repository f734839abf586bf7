// The player's HTTP: the recordings list, the manifest, a segment file whole or its first
// bytes (a range request), with the token as `Authorization: Bearer` when the page has one.
// A file is read as a stream, so the transfer's progress is seen while it runs (to measure
// the rate, and to give up a fetch that would come too late).

export class HttpError extends Error {
  constructor(status, url) {
    super(`HTTP ${status} for ${url}`);
    this.status = status;
  }
}

export class Net {
  // token: a bearer token, or null (development mode)
  constructor(token = null) {
    this.token = token;
    this.bytes = 0; // every body byte received
  }

  headers(extra = {}) {
    return this.token ? { ...extra, Authorization: `Bearer ${this.token}` } : extra;
  }

  async json(url) {
    const response = await fetch(url, { headers: this.headers(), cache: "no-store" });
    if (!response.ok) throw new HttpError(response.status, url);
    return response.json();
  }

  // The file at `url`, whole (length null) or its first `length` bytes, as a Uint8Array.
  // onProgress(received) after each chunk; signal: an AbortSignal. Resolves to
  // {data, seconds} (from the request to the last byte).
  async file(url, length, { signal, onProgress } = {}) {
    const started = performance.now();
    const extra = length != null ? { Range: `bytes=0-${length - 1}` } : {};
    const response = await fetch(url, { headers: this.headers(extra), signal });
    if (!response.ok) throw new HttpError(response.status, url);
    // a server that ignores the range sends the whole file (200): read what we need of it
    const cut = length != null && response.status === 200 ? length : null;
    const reader = response.body.getReader();
    const chunks = [];
    let received = 0;
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      chunks.push(value);
      received += value.length;
      this.bytes += value.length;
      if (onProgress) onProgress(received);
      if (cut != null && received >= cut) {
        reader.cancel().catch(() => {});
        break;
      }
    }
    const size = length != null ? Math.min(received, length) : received;
    const data = new Uint8Array(size);
    let at = 0;
    for (const chunk of chunks) {
      if (at >= size) break;
      const part = chunk.subarray(0, size - at);
      data.set(part, at);
      at += part.length;
    }
    if (length != null && size < length) throw new Error(`${url}: ${size} of ${length} bytes`);
    return { data, seconds: transferSeconds(url, started) };
  }
}

// The transfer's time (s), from the request to its last byte: the browser's own resource
// timing when it has it (the network's times, not this page's main thread, which may be
// busy decoding and painting when a chunk comes), else the time the page saw.
function transferSeconds(url, started) {
  const seen = (performance.now() - started) / 1000;
  const href = new URL(url, location.href).href;
  const entries = performance.getEntriesByName(href, "resource");
  const entry = entries.filter((e) => e.startTime >= started - 1).pop();
  performance.clearResourceTimings();
  if (!entry || !(entry.responseEnd > entry.startTime)) return seen;
  return Math.min(seen, (entry.responseEnd - entry.startTime) / 1000);
}

// the URLs of a room's recordings (server side: sfu/signaling/recordings.py)
export const recordingsUrl = (room) => `/recordings/${encodeURIComponent(room)}/`;
export const recordingUrl = (room, id, name) =>
  `/recordings/${encodeURIComponent(room)}/${encodeURIComponent(id)}/${encodeURIComponent(name)}`;

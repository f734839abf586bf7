// The WebSocket to the server (docs/signaling.md): JSON messages, requests matched to their
// replies by `id`, an EventTarget for what the server says by itself.
//
// The bottom layer of SfuClient (sfu-client.js): SignalingClient <- PeerClient (peers.js)
// <- DynacastClient (dynacast.js) <- PublishingClient (publishing.js) <- ReportingClient
// (reports.js) <- SfuClient. A message that is no reply goes to `this._onEvent(msg)`, which
// the layers above handle (each passes what it does not handle to the one below).

// The server's error reply to a request: `code` (see docs/signaling.md) and `reason`.
export class SfuError extends Error {
  constructor(code, reason) {
    super(`${code}: ${reason}`);
    this.name = "SfuError";
    this.code = code;
    this.reason = reason;
  }
}

export class SignalingClient extends EventTarget {
  constructor({ url } = {}) {
    super();
    const proto = location.protocol === "https:" ? "wss:" : "ws:";
    this.url = url || `${proto}//${location.host}/ws`;
    this.ws = null;
    this.errors = []; // every `error` the server sent without being asked
    this.bye = null; // the last `bye`: { code, reason }
    this._pending = new Map(); // request id -> { resolve, reject }
    this._nextId = 1;
  }

  get connected() {
    return this.ws !== null && this.ws.readyState === WebSocket.OPEN;
  }

  _emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  // A request: resolves with the reply of the same id, rejects with an SfuError.
  _request(message) {
    const id = this._nextId++;
    message.id = id;
    return new Promise((resolve, reject) => {
      this._pending.set(id, { resolve, reject });
      this.ws.send(JSON.stringify(message));
    });
  }

  // A message that expects no reply; false when there is no open connection.
  _send(message) {
    if (!this.connected) return false;
    this.ws.send(JSON.stringify(message));
    return true;
  }

  async _connect() {
    this.ws = new WebSocket(this.url);
    await new Promise((resolve, reject) => {
      this.ws.onopen = resolve;
      this.ws.onerror = () => reject(new Error(`cannot connect to ${this.url}`));
    });
    this.ws.onmessage = (event) => this._onMessage(JSON.parse(event.data));
    this.ws.onclose = (event) => {
      for (const { reject } of this._pending.values()) reject(new Error("connection closed"));
      this._pending.clear();
      this._emit("closed", { code: event.code, reason: event.reason });
    };
  }

  _onMessage(msg) {
    if (msg.id != null && this._pending.has(msg.id)) {
      const { resolve, reject } = this._pending.get(msg.id);
      this._pending.delete(msg.id);
      if (msg.type === "error") reject(new SfuError(msg.code, msg.reason));
      else resolve(msg);
      return;
    }
    if (msg.type === "error") {
      this.errors.push(msg);
      this._emit("error", msg);
    } else if (msg.type === "bye") {
      // out of the room: the server shuts down (the WebSocket closes next), or one of our
      // peer connections died (the WebSocket stays open; join again to come back)
      this.bye = msg;
      this._emit("bye", msg);
    } else {
      this._onEvent(msg);
    }
  }

  _onEvent(msg) {} // the layers above: track_published, subscribe_offer, level_changed...

  _disconnect() {
    if (this.ws) this.ws.close();
  }
}

// The device picker: a camera and a microphone <select> (#camSelect, #micSelect), filled
// from enumerateDevices() once the page has access (after publishing: labels are empty
// before), and again when devices come or go. Choosing one sends from it at once (the
// sender's track replaced, no renegotiation; muted if the one before was).

import { $, showError } from "./controls.js";

const PICKERS = [["camSelect", "videoinput", "video", "camera"], ["micSelect", "audioinput", "audio", "microphone"]];

export class DevicePicker {
  // client(): the SfuClient now; changed(kind): after a switch (our tile shows the new one)
  constructor(client, changed = () => {}) {
    this.client = client;
    for (const [id, , kind] of PICKERS) {
      $(id).addEventListener("change", async () => {
        const c = this.client();
        if (!c) return;
        $(id).disabled = true;
        try {
          await c.switchDevice(kind, $(id).value);
          changed(kind);
        } catch (e) {
          showError(null, `cannot switch the ${kind === "video" ? "camera" : "microphone"}: ${e.message}`);
        } finally {
          await this.fill();
        }
      });
    }
    if (navigator.mediaDevices) navigator.mediaDevices.addEventListener("devicechange", () => this.fill());
  }

  // every camera and microphone, the one sending now selected; disabled for a kind we do
  // not publish, empty when we publish nothing
  async fill() {
    const c = this.client();
    if (!c || !c.publishPc) {
      this.clear();
      return;
    }
    const devices = await c.devices().catch(() => []);
    for (const [id, deviceKind, kind, noun] of PICKERS) {
      const select = $(id);
      const current = c.deviceOf(kind);
      const options = devices.filter((d) => d.kind === deviceKind).map((d, i) => {
        const option = document.createElement("option");
        option.value = d.deviceId;
        option.textContent = d.label || `${noun} ${i + 1}`;
        option.selected = d.deviceId === current;
        return option;
      });
      select.replaceChildren(...options);
      select.disabled = current === null || options.length === 0;
    }
  }

  // out of the room: nothing to choose
  clear() {
    for (const [id] of PICKERS) {
      $(id).replaceChildren();
      $(id).disabled = true;
    }
  }
}

// Who is on stage: the speaking rings (active_speakers: the dominant speaker's tile gets
// class `speaking-dominant`, every other speaker's `speaking`, ours included), and the tile
// the page enlarges by itself (layout.js setAuto) when the user has not enlarged one:
//   * a shared screen, when it appears (the latest one), until the user clicks it back;
//   * else in speaker view, the dominant speaker's tile (the server's choice is sticky:
//     it does not flap), or the last remote one while we are the dominant speaker.

export class Stage {
  // layout: a Layout; button: the speaker view toggle (aria-pressed), or null
  constructor(layout, button = null) {
    this.layout = layout;
    this.button = button;
    this.speakerView = false;
    this.selfId = null; // our participant id: our tile is tile-self
    this.dominant = null;
    this.speakers = [];
    this._lastRemote = null; // the last remote dominant speaker
    this._screens = []; // screen tiles, in the order they appeared
    this._dismissed = new WeakSet(); // screens the user clicked back
    layout.onDismiss = (el) => this._dismiss(el);
    if (button) button.addEventListener("click", () => this.setSpeakerView(!this.speakerView));
  }

  tileOf(participantId) {
    if (!participantId) return null;
    const id = participantId === this.selfId ? "self" : participantId;
    return document.getElementById(`tile-${id}`);
  }

  // active_speakers: the rings, and the speaker view's tile
  setSpeakers({ dominant, speakers }) {
    this.dominant = dominant;
    this.speakers = speakers || [];
    if (dominant && dominant !== this.selfId) this._lastRemote = dominant;
    this.paint();
    this.update();
  }

  // the rings again (a tile came, or our id is known)
  paint() {
    const speaking = new Set(this.speakers.map((s) => s.participant_id));
    for (const el of this.layout.tiles()) {
      if (el.classList.contains("screen")) continue;
      const id = el.id === "tile-self" ? this.selfId : el.id.slice("tile-".length);
      el.classList.toggle("speaking-dominant", id != null && id === this.dominant);
      el.classList.toggle("speaking", id != null && speaking.has(id) && id !== this.dominant);
    }
  }

  setSpeakerView(on) {
    this.speakerView = on;
    if (this.button) this.button.setAttribute("aria-pressed", String(on));
    this.update();
  }

  screenAdded(el) {
    if (!this._screens.includes(el)) this._screens.push(el);
    this.update();
  }

  screenRemoved(el) {
    this._screens = this._screens.filter((s) => s !== el);
    this.update();
  }

  // the user clicked back the tile the page had enlarged
  _dismiss(el) {
    if (this._screens.includes(el)) this._dismissed.add(el);
    else if (this.speakerView) this.setSpeakerView(false);
  }

  _choice() {
    const screens = this._screens.filter((el) => el.isConnected && !this._dismissed.has(el));
    if (screens.length) return screens[screens.length - 1];
    if (!this.speakerView) return null;
    const own = this.dominant && this.dominant === this.selfId;
    return this.tileOf(own ? this._lastRemote : this.dominant);
  }

  update() {
    this.layout.setAuto(this._choice());
  }

  reset() {
    this.dominant = null;
    this.speakers = [];
    this._lastRemote = null;
    this._screens = [];
    this.selfId = null;
  }
}

// Tile sizes. Three modes:
//   grid:      16:9 tiles as large as fit the page below the controls (a CSS grid as wide
//              as the page; the number of columns that gives the largest tiles);
//   spotlight: one tile as large as fits, the others a strip of small tiles beside it (a
//              wide page) or below it (a narrow one); a click on a tile enlarges it, a
//              click on the enlarged one restores the grid. Besides the user's click, the
//              page may choose a tile to enlarge (`setAuto`: a shared screen, the dominant
//              speaker in speaker view); the user's choice wins until clicked back, and a
//              click on the page's choice hands it back (`onDismiss(el)`);
//   fixed:     every tile a given size (?tile=WxH, or window.sfuSetTileSize for the tests).
// Each remote video reports the size it is rendered at (SfuClient.watchVideo), so the
// server sends each tile the spatial layer that fits it: an enlarged tile gets a higher one.

const GAP = 8; // px between tiles (the CSS gap)
const MIN_WIDTH = 120; // grid tiles no smaller: more tiles than fit scroll the page
const RATIO = 16 / 9;

// the number of columns that gives n tiles the largest 16:9 width within width x height
export function gridFit(n, width, height) {
  let best = { cols: 1, tileWidth: 0 };
  for (let cols = 1; cols <= n; cols++) {
    const rows = Math.ceil(n / cols);
    const w = Math.min((width - GAP * (cols - 1)) / cols, ((height - GAP * (rows - 1)) / rows) * RATIO);
    if (w > best.tileWidth) best = { cols, tileWidth: w };
  }
  const tileWidth = Math.min(width, Math.max(MIN_WIDTH, Math.floor(best.tileWidth)));
  const cols = Math.max(1, Math.min(best.cols, Math.floor((width + GAP) / (tileWidth + GAP))));
  return { cols, tileWidth };
}

// the enlarged tile and the strip: beside it or below it, whichever leaves it larger
export function spotlightFit(others, width, height) {
  const small = Math.round(Math.min(160, Math.max(96, Math.min(width, height * RATIO) / 6)));
  const smallH = Math.round(small / RATIO);
  const alone = Math.min(width, height * RATIO);
  const side = others ? Math.min(width - small - GAP, height * RATIO) : alone;
  const below = others ? Math.min(width, (height - smallH - GAP) * RATIO) : alone;
  const big = Math.floor(Math.max(side, below, MIN_WIDTH));
  const bigH = Math.floor(big / RATIO);
  return {
    strip: side >= below ? "side" : "bottom",
    big, bigH, small, smallH,
    rows: Math.max(others, Math.ceil((bigH + GAP) / (smallH + GAP))),
    cols: Math.max(1, Math.floor((width + GAP) / (small + GAP))),
  };
}

export class Layout {
  // container: the tiles' parent; fixed: [w, h] for every tile, or null
  constructor(container, fixed = null) {
    this.container = container;
    this.fixed = fixed;
    this.remoteSize = null; // [w, h] of every remote tile (sfuSetTileSize)
    this.userBig = null; // the tile the user enlarged
    this.autoBig = null; // the tile the page enlarges when the user has not (stage.js)
    this.onDismiss = null; // (el): the user clicked the page's enlarged tile
    window.addEventListener("resize", () => this.update());
    // the controls above the tiles may wrap to more lines, an error banner come and go
    this._above = new ResizeObserver(() => this.update());
    for (const el of document.querySelectorAll("[data-above-tiles]")) this._above.observe(el);
  }

  // the enlarged tile: the user's, else the page's
  get big() {
    return this.userBig || this.autoBig;
  }

  tiles() {
    return [...this.container.children].filter((el) => el.classList.contains("tile"));
  }

  // a new tile: its size if every tile has a fixed one
  added(el, { remote }) {
    const size = remote && this.remoteSize ? this.remoteSize : this.fixed;
    if (size) this._setSize(el, size);
    this.update();
  }

  removed(el) {
    if (this.userBig === el) this.userBig = null;
    if (this.autoBig === el) this.autoBig = null;
    this.update();
  }

  // every remote tile w x h from now on; 0x0 hides them (their videos pause)
  setRemoteSize(width, height) {
    this.remoteSize = [width, height];
    this.userBig = null;
    for (const el of this.tiles()) if (el.id !== "tile-self") this._setSize(el, this.remoteSize);
    this.update();
  }

  // enlarge `el`, or restore the grid if it is the enlarged one (the page's choice, if it
  // has one, takes over again)
  toggle(el) {
    if (this.isFixed()) return;
    if (this.userBig === el) this.userBig = null;
    else if (!this.userBig && this.autoBig === el) {
      this.autoBig = null;
      if (this.onDismiss) this.onDismiss(el);
    } else this.userBig = el;
    this.update();
  }

  // the page's choice of a tile to enlarge (null: none)
  setAuto(el) {
    if (this.autoBig === el) return;
    this.autoBig = el;
    this.update();
  }

  reset() {
    this.userBig = this.autoBig = null;
    this.update();
  }

  isFixed() {
    return this.fixed !== null || this.remoteSize !== null;
  }

  _setSize(el, [width, height]) {
    el.style.width = `${width}px`;
    el.style.height = `${height}px`;
    el.style.display = width && height ? "" : "none";
  }

  update() {
    const c = this.container;
    const tiles = this.tiles();
    if (this.userBig && !tiles.includes(this.userBig)) this.userBig = null;
    if (this.autoBig && !tiles.includes(this.autoBig)) this.autoBig = null;
    for (const el of tiles) el.classList.toggle("big", el === this.big);
    c.classList.toggle("fixed", this.isFixed());
    c.classList.toggle("spotlight", !this.isFixed() && this.big !== null);
    if (this.isFixed() || !tiles.length) return;
    const top = c.getBoundingClientRect().top + window.scrollY;
    const width = c.clientWidth;
    const height = Math.max(MIN_WIDTH / RATIO, window.innerHeight - top - GAP);
    const set = (name, px) => c.style.setProperty(name, `${px}px`);
    if (this.big) {
      const fit = spotlightFit(tiles.length - 1, width, height);
      c.classList.toggle("side", fit.strip === "side");
      c.classList.toggle("bottom", fit.strip === "bottom");
      set("--big-w", fit.big);
      set("--big-h", fit.bigH);
      set("--small-w", fit.small);
      set("--small-h", fit.smallH);
      c.style.setProperty("--rows", String(fit.rows));
      c.style.setProperty("--cols", String(fit.cols));
    } else {
      const fit = gridFit(tiles.length, width, height);
      set("--tile-w", fit.tileWidth);
      set("--tile-h", Math.floor(fit.tileWidth / RATIO));
      c.style.setProperty("--cols", String(fit.cols));
    }
  }
}

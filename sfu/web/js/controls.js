// The demo page's controls: the join form and its URL parameters, the buttons (join, leave,
// mic, camera, stats), the status line and the error banner.

export const $ = (id) => document.getElementById(id);

const size = (text) => text.split("x").map(Number);

// The page's URL parameters: room, name, codec, mode, token fill the form; res: the camera's
// capture size (default 1280x720); tile: a fixed size for every tile; publish=0: receive
// only; autojoin=1; stats=1: the stats panel open.
export function readParams() {
  const params = new URLSearchParams(location.search);
  for (const key of ["room", "name", "codec", "mode", "token"]) {
    if (params.has(key)) $(key).value = params.get(key);
  }
  const settings = {
    capture: params.has("res") ? size(params.get("res")) : [1280, 720],
    tileSize: params.has("tile") ? size(params.get("tile")) : null,
    publish: params.get("publish") !== "0",
    autojoin: params.get("autojoin") === "1",
    stats: params.get("stats") === "1",
  };
  if (params.has("token")) {
    // a token is a credential: keep it out of the address bar, history and bookmarks
    params.delete("token");
    const query = params.toString();
    history.replaceState(null, "", location.pathname + (query ? `?${query}` : "") + location.hash);
  }
  return settings;
}

// a token names who joins (the server refuses another name): show that name
function tokenIdentity(token) {
  try {
    const body = token.split(".")[0].replace(/-/g, "+").replace(/_/g, "/");
    const claims = JSON.parse(atob(body + "=".repeat((4 - body.length % 4) % 4)));
    return typeof claims.sub === "string" ? claims.sub : null;
  } catch (e) {
    return null;
  }
}

// What the form asks to join with (the name is the token's identity, if it names one).
export function joinRequest() {
  const token = $("token").value.trim() || undefined;
  const identity = token ? tokenIdentity(token) : null;
  if (identity) $("name").value = identity;
  return {
    room: $("room").value, name: $("name").value, codec: $("codec").value, token,
    scalabilityMode: $("mode").value || undefined,
  };
}

const HINTS = {
  unauthorized: "This server or room needs a valid access token (sfu token create): enter it in Token.",
  duplicate_identity: "The same identity joined this room on another connection.",
  room_full: "The room is full.",
  too_many_rooms: "The server has as many rooms as it allows.",
};

// a refused join or an error from the server, shown until the next join
export function showError(code, reason) {
  const box = $("error");
  box.textContent = "";
  const title = document.createElement("strong");
  title.textContent = code ? `Refused by the server (${code}): ` : "Failed: ";
  box.append(title, reason);
  if (HINTS[code]) {
    const hint = document.createElement("div");
    hint.textContent = HINTS[code];
    box.append(hint);
  }
  box.dataset.code = code || "";
  box.hidden = false;
}

export function clearError() {
  $("error").hidden = true;
  $("error").textContent = "";
  delete $("error").dataset.code;
}

export function setStatus(text) {
  $("status").textContent = text;
}

// "joining", "joined" (publishing: whether mic and camera buttons apply) or "out"; in a room
// the form keeps only its buttons, to leave the page to the tiles
export function setState(state, { publishing = false } = {}) {
  document.body.classList.toggle("in-room", state === "joined");
  $("joinBtn").disabled = state !== "out";
  $("leaveBtn").disabled = state !== "joined";
  for (const [button, label] of [["micBtn", "Mute mic"], ["camBtn", "Stop camera"]]) {
    $(button).disabled = state !== "joined" || !publishing;
    if (state !== "joined") continue;
    $(button).setAttribute("aria-pressed", "false");
    $(button).textContent = label;
  }
}

// Our own mic and camera: `client()` is the client of the moment.
export function bindMuteButtons(client) {
  for (const [button, kind, on, off] of [["micBtn", "audio", "Mute mic", "Unmute mic"],
                                         ["camBtn", "video", "Stop camera", "Start camera"]]) {
    $(button).addEventListener("click", async () => {
      const muted = $(button).getAttribute("aria-pressed") !== "true";
      try {
        await client().setMuted(kind, muted);
        $(button).setAttribute("aria-pressed", String(muted));
        $(button).textContent = muted ? off : on;
      } catch (e) {
        showError(e.code, e.reason || e.message);
      }
    });
  }
}

// The stats panel's button: `toggle(open)` on every press.
export function bindStatsButton(toggle, open = false) {
  const button = $("statsBtn");
  const set = (value) => {
    button.setAttribute("aria-pressed", String(value));
    toggle(value);
  };
  button.addEventListener("click", () => set(button.getAttribute("aria-pressed") !== "true"));
  set(open);
}

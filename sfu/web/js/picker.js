// A remote video tile's layer picker: "auto" (the server chooses), or one of the levels the
// stream has (asked of the server once it flows), which pins it.

// the picker of tile `el` (made if it has none); client(): the SfuClient now
export function addPicker(el, client) {
  if (el.querySelector("select")) return;
  const pick = document.createElement("select");
  pick.title = "the layer to receive";
  pick.innerHTML = `<option value="auto">auto</option>`; // the stream's levels: fillLevels
  pick.addEventListener("change", () => {
    const trackId = el.dataset.trackId;
    if (pick.value === "auto") client().auto(trackId);
    else client().setLevel(trackId, ...pick.value.split(",").map(Number));
  });
  el.appendChild(pick);
}

// the picker offers the levels the stream has (asked once it flows, retried a few times)
export async function fillLevels(el, trackId, client) {
  const pick = el.querySelector("select");
  if (!pick || pick.options.length > 1 || pick.dataset.asked === trackId) return;
  pick.dataset.asked = trackId;
  try {
    const reply = await client().getLevels(trackId);
    for (const lv of reply.levels) {
      const option = document.createElement("option");
      option.value = `${lv.spatial},${lv.temporal}`;
      option.textContent = `S${lv.spatial}T${lv.temporal} ${lv.width}x${lv.height}`;
      pick.appendChild(option);
    }
  } catch (e) {
    delete pick.dataset.asked; // gone meanwhile, or not measured yet: asked again later
  }
  if (pick.options.length <= 1) {
    delete pick.dataset.asked;
    const tries = Number(pick.dataset.tries || 0) + 1;
    pick.dataset.tries = String(tries);
    if (tries < 5) setTimeout(() => fillLevels(el, trackId, client), 2000);
  }
}

// The SFU's browser client, at /client.js for the pages and tools that import it from
// there: the modules themselves are under js/ (sfu-client.js, and the layers it names).
//
//   import { SfuClient, SfuError, CODECS } from "/client.js";

export { CODECS, SfuClient, SfuError } from "./js/sfu-client.js";

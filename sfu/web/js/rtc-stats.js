// The browser's own figures of a peer connection (getStats()), as plain objects: what the
// page shows on its tiles and stats panel, and what the tests read.

// bits/s between two readings of a cumulative byte count (getStats timestamps are in ms)
function rate(previous, bytes, at) {
  if (previous == null || bytes == null || at <= previous.at || bytes < previous.bytes) return null;
  return ((bytes - previous.bytes) * 8 * 1000) / (at - previous.at);
}

// Each remote video of `pc` as received now: track id -> { fps, bitrate (bits/s since the
// last call with the same `memory` Map), width, height, dropped, freezes, lost }; only
// tracks in `tracks` (the room's).
export async function videoFigures(pc, tracks, memory) {
  const out = new Map();
  if (!pc) return out;
  const report = await pc.getStats();
  report.forEach((s) => {
    if (s.type !== "inbound-rtp" || s.kind !== "video" || !tracks.has(s.trackIdentifier)) return;
    const key = `in:${s.trackIdentifier}`;
    const bitrate = rate(memory.get(key), s.bytesReceived, s.timestamp);
    memory.set(key, { bytes: s.bytesReceived, at: s.timestamp });
    out.set(s.trackIdentifier, {
      fps: s.framesPerSecond ?? null,
      bitrate,
      width: s.frameWidth ?? null,
      height: s.frameHeight ?? null,
      dropped: s.framesDropped ?? 0,
      freezes: s.freezeCount ?? 0,
      lost: s.packetsLost ?? 0,
    });
  });
  return out;
}

// The video `pc` sends now on m-line `mid` (null: any): { width, height, fps, bitrate, mode,
// limitation }, or null.
export async function sendingFigures(pc, memory, mid = null) {
  if (!pc) return null;
  const report = await pc.getStats();
  let video = null;
  report.forEach((s) => {
    if (s.type === "outbound-rtp" && s.kind === "video" && (mid == null || s.mid === mid)) video = s;
  });
  if (!video) return null;
  const key = `out:${mid}`;
  const bitrate = rate(memory.get(key), video.bytesSent, video.timestamp);
  memory.set(key, { bytes: video.bytesSent, at: video.timestamp });
  return {
    width: video.frameWidth ?? null,
    height: video.frameHeight ?? null,
    fps: video.framesPerSecond ?? null,
    bitrate,
    mode: video.scalabilityMode ?? null,
    limitation: video.qualityLimitationReason ?? null,
  };
}

// Inbound RTP stats of a (subscribe) connection, one entry per remote track.
export async function inboundStats(pc) {
  if (!pc) return [];
  const report = await pc.getStats();
  const out = [];
  report.forEach((s) => {
    if (s.type === "inbound-rtp") {
      out.push({
        kind: s.kind,
        ssrc: s.ssrc,
        trackIdentifier: s.trackIdentifier,
        mid: s.mid,
        packetsReceived: s.packetsReceived,
        packetsLost: s.packetsLost,
        framesDecoded: s.framesDecoded,
        frameWidth: s.frameWidth,
        frameHeight: s.frameHeight,
        framesPerSecond: s.framesPerSecond,
        totalSamplesReceived: s.totalSamplesReceived,
        nackCount: s.nackCount,
        pliCount: s.pliCount,
        freezeCount: s.freezeCount,
        totalFreezesDuration: s.totalFreezesDuration,
        keyFramesDecoded: s.keyFramesDecoded,
        framesDropped: s.framesDropped,
        retransmittedPacketsReceived: s.retransmittedPacketsReceived,
      });
    }
  });
  return out;
}

// Outbound RTP stats of a (publish) connection, one entry per sent track.
export async function outboundStats(pc) {
  if (!pc) return [];
  const report = await pc.getStats();
  const out = [];
  report.forEach((s) => {
    if (s.type === "outbound-rtp") {
      out.push({
        kind: s.kind,
        mid: s.mid,
        frameWidth: s.frameWidth,
        frameHeight: s.frameHeight,
        bytesSent: s.bytesSent,
        active: s.active,
        framesEncoded: s.framesEncoded,
        scalabilityMode: s.scalabilityMode,
        qualityLimitationReason: s.qualityLimitationReason,
        encoderImplementation: s.encoderImplementation,
        targetBitrate: s.targetBitrate,
        framesPerSecond: s.framesPerSecond,
        packetsSent: s.packetsSent,
        retransmittedPacketsSent: s.retransmittedPacketsSent,
        nackCount: s.nackCount,
        pliCount: s.pliCount,
        firCount: s.firCount,
        keyFramesEncoded: s.keyFramesEncoded,
        totalEncodeTime: s.totalEncodeTime,
      });
    }
  });
  return out;
}

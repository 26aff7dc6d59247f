// Package ingest is microdrop's media path: it receives the streamer's
// program feed, relays it, mixes each drop's audio cue into it, marks the
// video at the open, and confirms the cue went out.
//
// # What it owns
//
//   - An RTSP server (gortsplib) accepting publish (ANNOUNCE/RECORD) and
//     play (DESCRIBE/SETUP/PLAY) per path, over TCP and, when configured, UDP.
//   - An RTSP pull client per Config.Pull entry, reconnecting with backoff.
//   - WHIP ingest (POST /whip/{path}, bearer token, DELETE of the returned
//     Location) and WHEP playback (POST /whep/{path}), with pion/webrtc.
//   - One stream registry: a path has one publisher and any number of
//     readers; WHIP streams play over RTSP and WHEP, RTSP streams over RTSP
//     and, when they carry H.264/Opus, WHEP.
//   - Cue injection: on microdrop.DropOpened, every stream bound to the
//     drop's channel (Config.Paths, else the channel named like the path)
//     gets the cue from package cue mixed into its audio. Opus is decoded,
//     mixed and re-encoded with the pure-Go gopus only for the packets the
//     cue covers; all other packets and every RTP header pass untouched.
//     LPCM and G.711 are mixed in place; AAC passes through with a warning.
//   - A video marker: an H.264 SEI user_data_unregistered NAL unit
//     (MarkerUUID + JSON {"drop","cue","unix_ms"}) before the first slice of
//     the first access unit after the open. ParseSEI reads it back.
//   - Confirmation: a detector listens to each stream's relayed Opus (and to
//     Config.PlaybackURL through ffmpeg when present) and publishes
//     microdrop.CueAired with the delay from the open.
//
// # Readers, and the stream hook
//
// Stream.AddReader(name, queue, fn) is the one way to consume a stream
// inside the process: fn receives every relayed *Packet (RTP after mixing
// and marking, with its media index, format and receive time) on its own
// goroutine, through a queue of the given size. A reader that falls behind
// loses packets (counted in Reader.Dropped and Stream.Dropped) and never
// slows the publisher or other readers. WHEP readers and the cue confirmer
// are built on it.
//
// Server.Hook(StreamHook) is how ingest tells others about streams: the
// hook hears of every live stream when it is added, then of each stream
// published (before its first packet is relayed, so a reader it attaches
// misses nothing) and unpublished, in order, one call at a time. Highlight
// capture (package ingest/highlight: rolling buffers, clips, MP4) follows
// streams this way; nobody polls the registry. ingest never imports
// ingest/highlight: highlight imports ingest and registers its hook.
//
// # The per-packet path
//
// gortsplib parses a publisher's packet on its connection's reader
// goroutine, which also runs the relay: cue mixing and marking (packets a
// cue does not cover pass untouched), one synchronous write into the
// gortsplib ServerStream (which marshals the packet once and queues it for
// each RTSP reader's writer goroutine, in a queue of
// Config.MaxReaderQueue packets) and one offer to each AddReader queue.
// Nothing else sits between a publisher and its readers. The RTSP server's
// TCP connections are wrapped (conn.go) so that a reader's queued frames
// leave in one write(2) per burst instead of one per packet and a
// publisher's burst arrives in few read(2)s; Packet.Received is the time
// of the read(2) that brought the packet. BenchmarkRelayPacket measures
// the path; `microdrop loadgen relay` measures it end to end.
//
// # What it must never do
//
// Block a publisher on a reader or a hook; change packets other than those
// a cue covers (and the one SEI insertion, whose sequence shift it carries
// forward); decide anything about drops (it only reacts to bus events);
// import claims or ingest/highlight; keep package-level state; write to
// stdout. Bad SDP or RTSP input gets a
// clear 4xx and changes nothing.
package ingest

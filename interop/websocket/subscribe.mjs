// Runs in Node 20+ (started with --experimental-websocket on Node 20): connects to a
// moq server with the real @moq/net package, which in Node has no WebTransport and so
// takes its WebSocket (qmux) path, subscribes to one track and prints what it got as
// one JSON line: {version, transport, frames: [{group, payload}], error?}.
//
//   node --experimental-websocket subscribe.mjs NPM_DIR URL BROADCAST TRACK FRAMES [TIMEOUT_MS]
//
// NPM_DIR holds node_modules/@moq/net (the interop cache, never this repository).
import { pathToFileURL } from "node:url";

const [npmDir, url, broadcastName, trackName, framesArg, timeoutArg] = process.argv.slice(2);
if (!npmDir || !url || !broadcastName || !trackName || !framesArg) {
	console.error("usage: subscribe.mjs NPM_DIR URL BROADCAST TRACK FRAMES [TIMEOUT_MS]");
	process.exit(2);
}
const wanted = Number(framesArg);
const timeoutMs = Number(timeoutArg ?? 15000);

// Node 20 lacks Promise.withResolvers (Node 22 has it); @moq/qmux uses it.
if (typeof Promise.withResolvers !== "function") {
	Promise.withResolvers = function withResolvers() {
		let resolve;
		let reject;
		const promise = new this((res, rej) => {
			resolve = res;
			reject = rej;
		});
		return { promise, resolve, reject };
	};
}
if (typeof globalThis.WebSocket !== "function") {
	console.error("no global WebSocket: run node with --experimental-websocket (Node 20) or use Node 22+");
	process.exit(2);
}

const Moq = await import(pathToFileURL(`${npmDir}/node_modules/@moq/net/index.js`).href);
const decoder = new TextDecoder();
const result = { version: undefined, transport: undefined, frames: [] };

function describe(err) {
	if (err instanceof AggregateError) return err.errors.map(describe).join("; ");
	if (err instanceof Error) return `${err.name}: ${err.message}${err.cause ? ` (cause: ${describe(err.cause)})` : ""}`;
	return String(err);
}

function within(promise, ms, what) {
	let timer;
	const expired = new Promise((_, reject) => {
		timer = setTimeout(() => reject(new Error(`${what}: nothing after ${ms} ms`)), ms);
	});
	return Promise.race([promise, expired]).finally(() => clearTimeout(timer));
}

let connection;
try {
	connection = await Moq.Connection.connect(new URL(url), { signal: AbortSignal.timeout(timeoutMs) });
	result.version = connection.version;
	result.transport = connection.transport;
	const broadcast = connection.consume(Moq.Path.from(broadcastName));
	const track = broadcast.subscribe(trackName);
	const deadline = Date.now() + timeoutMs;
	while (result.frames.length < wanted) {
		const group = await within(track.recvGroup(), deadline - Date.now(), "next group");
		if (!group) throw new Error("track ended");
		for (;;) {
			const frame = await within(group.readFrame(), deadline - Date.now(), "next frame");
			if (!frame) break;
			result.frames.push({ group: group.sequence, payload: decoder.decode(frame.payload) });
			if (result.frames.length >= wanted) break;
		}
	}
	track.close();
	broadcast.close();
} catch (err) {
	result.error = describe(err);
} finally {
	connection?.close();
}
// Let the close reach the server (@moq/qmux flushes it after 100 ms) before exiting.
await new Promise((resolve) => setTimeout(resolve, 300));
console.log(JSON.stringify(result));
process.exit(result.error ? 1 : 0);

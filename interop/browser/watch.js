// Runs inside any engine (see engines.mjs): connects to a relay with @moq/net 0.3.4 letting
// the library pick the transport itself (WebTransport, or its WebSocket fallback), watches
// a clock broadcast, then optionally publishes a clock of its own for a native subscriber.
// It only observes and reports; the driver and the scenario judge.
//
// The driver calls start(config) once and then polls state() (so it works the same over
// CDP, WebDriver BiDi and classic WebDriver), and may call stopPublishing().
import * as Moq from "@moq/net";

const decoder = new TextDecoder();
const t0 = performance.now();
const now = () => Math.round(performance.now() - t0);

const state = { phase: "idle", log: [], done: false, result: undefined, publishing: undefined };
let stopPublish;
const stopRequested = new Promise((resolve) => {
	stopPublish = resolve;
});

function show(...parts) {
	const line = `[${now()}ms] ${parts.join(" ")}`;
	state.log.push(line);
	document.getElementById("log")?.append(`${line}\n`);
}

class Timeout extends Error {
	constructor(what, ms) {
		super(`${what}: nothing after ${ms} ms`);
		this.name = "Timeout";
	}
}

// Race a promise against a deadline (a performance.now() value).
function until(promise, deadline, what) {
	const ms = Math.max(0, Math.round(deadline - performance.now()));
	let timer;
	const expired = new Promise((_, reject) => {
		timer = setTimeout(() => reject(new Timeout(what, ms)), ms);
	});
	return Promise.race([promise, expired]).finally(() => clearTimeout(timer));
}

function describe(err) {
	if (err instanceof AggregateError) return err.errors.map(describe).join("; ");
	if (err instanceof Error) {
		let text = `${err.name}: ${err.message}`;
		if (err.source) text += ` (source=${err.source}, streamErrorCode=${err.streamErrorCode})`;
		if (err.cause) text += ` caused by ${describe(err.cause)}`;
		return text;
	}
	return String(err);
}

const pad = (n) => String(n).padStart(2, "0");
// The clock's wire format, in UTC: a group per minute whose first frame is
// "YYYY-MM-DD HH:MM:", then one frame "SS" per second.
const minuteOf = (d) => `${d.getUTCFullYear()}-${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())} ${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}:`;

/**
 * config: {
 *   url:        relay URL (http://host:port/path: the library fetches /certificate.sha256),
 *   websocket:  optional @moq/net `websocket` option (default: the library's own choice),
 *   connectTimeoutMs,
 *   watch:      { broadcast, track, minFrames, minLive, timeoutMs }: read until at least
 *               minFrames seconds frames, of which minLive arrived live (at least 500 ms
 *               after the first, which with its group's older frames comes from the cache),
 *   publish:    optional { broadcast, track, maxMs }: publish a clock until stopPublishing()
 *               or maxMs, whichever comes first.
 * }
 */
async function run(config) {
	const result = { clock: { lines: [], arrivals: [], groups: [] }, announced: [] };
	state.result = result;
	state.phase = "connecting";
	let connection;
	const started = now();
	try {
		connection = await Moq.Connection.connect(new URL(config.url), {
			...(config.websocket ? { websocket: config.websocket } : {}),
			// A forced version list (e.g. ["moqt-17"]) replaces the library's
			// WT-Available-Protocols; the WebSocket fallback is then off, so the version
			// is the one asked for.
			...(config.protocols ? { webtransport: { protocols: config.protocols }, websocket: { enabled: false } } : {}),
			signal: AbortSignal.timeout(config.connectTimeoutMs),
		});
	} catch (err) {
		result.connectError = describe(err);
		show("connect failed", result.connectError);
		return;
	}
	result.connectMs = now() - started;
	result.version = connection.version;
	result.transport = connection.transport;
	result.url = connection.url.toString();
	show("connected", config.url, "version", connection.version, "transport", connection.transport, `in ${result.connectMs} ms`);

	try {
		state.phase = "watching";
		await watch(connection, config.watch, result);
		if (config.publish) {
			state.phase = "publishing";
			await publish(connection, config.publish, result);
		}
	} finally {
		connection.close();
	}
}

async function watch(connection, spec, result) {
	const out = result.clock;
	const deadline = performance.now() + spec.timeoutMs;
	// Discovery first: the relay must announce the broadcast to us.
	const announced = connection.announced(Moq.Path.empty());
	try {
		for (;;) {
			const event = await until(announced.next(), deadline, `announcement of ${spec.broadcast}`);
			if (!event) throw new Error("announcement stream ended");
			result.announced.push({ path: event.path, active: event.active });
			if (event.active && event.path === spec.broadcast) break;
		}
	} catch (err) {
		out.announceError = describe(err);
		show("announce", out.announceError);
	} finally {
		announced.close();
	}

	const broadcast = connection.consume(Moq.Path.from(spec.broadcast));
	const track = broadcast.subscribe(spec.track);
	// Read as a player does: frames across groups, the library discarding a group once a
	// newer one is there (so an older cached group whose end is slow to come cannot stall
	// the watch). Each group's frame 0 is its minute, the others its seconds.
	const minutes = new Map();
	let first;
	let live = 0;
	try {
		for (;;) {
			const frame = await until(track.readFrameSequence(), deadline, "next frame");
			if (!frame) {
				out.end = "track ended";
				break;
			}
			const text = decoder.decode(frame.payload);
			if (frame.frame === 0) {
				minutes.set(frame.group, text);
				out.groups.push(frame.group);
				continue;
			}
			const minute = minutes.get(frame.group);
			if (minute === undefined) {
				out.headless = (out.headless ?? 0) + 1; // joined a group after its first frame
				continue;
			}
			const at = Date.now();
			first ??= at;
			if (at - first >= 500) live += 1;
			out.lines.push(`${minute}${text}`);
			out.arrivals.push(at);
			show("clock", `${minute}${text}`, `(group ${frame.group} frame ${frame.frame})`);
			if (out.lines.length >= spec.minFrames && live >= (spec.minLive ?? 0)) break;
		}
	} catch (err) {
		out.error = describe(err);
		show("watch", out.error);
	} finally {
		track.close();
		broadcast.close();
	}
}

async function publish(connection, spec, result) {
	const out = { frames: 0, groups: 0 };
	result.publish = out;
	const producer = new Moq.Broadcast.Producer();
	const track = producer.createTrack(spec.track);
	connection.publish(Moq.Path.from(spec.broadcast), producer);
	state.publishing = spec.broadcast;
	show("publishing", spec.broadcast, spec.track);

	const deadline = performance.now() + spec.maxMs;
	let group;
	let minute;
	try {
		while (performance.now() < deadline) {
			const d = new Date();
			if (minuteOf(d) !== minute) {
				group?.close();
				minute = minuteOf(d);
				group = track.appendGroup();
				group.writeString(minute);
				out.groups += 1;
			}
			group.writeString(pad(d.getUTCSeconds()));
			out.frames += 1;
			// Sleep to the next wall-clock second, or stop when asked.
			const wait = 1000 - (Date.now() % 1000) + 5;
			const stop = await Promise.race([stopRequested.then(() => true), new Promise((r) => setTimeout(() => r(false), wait))]);
			if (stop) {
				out.end = "stopped by the driver";
				break;
			}
		}
		out.end ??= `published for ${spec.maxMs} ms`;
	} catch (err) {
		out.error = describe(err);
		show("publish", out.error);
	} finally {
		group?.close();
		track.close();
		producer.close();
	}
}

globalThis.moqInterop = {
	start(config) {
		if (state.phase !== "idle") return false;
		run(config)
			.catch((err) => {
				state.result = { ...(state.result ?? {}), fatal: describe(err) };
				show("fatal", describe(err));
			})
			.finally(() => {
				state.phase = "done";
				state.done = true;
			});
		return true;
	},
	// Everything the driver needs, as plain JSON-able data.
	state() {
		return JSON.parse(JSON.stringify({ ...state, probe: globalThis.moqProbe }));
	},
	stopPublishing() {
		stopPublish();
		return true;
	},
};

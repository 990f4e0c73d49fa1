// Runs inside headless Chromium (see driver.mjs): connects to a relay with @moq/net's own
// API over WebTransport, waits for broadcasts to be announced, subscribes to tracks and
// records every frame it receives. Checks happen in the driver; this only observes.
import * as Moq from "@moq/net";

const decoder = new TextDecoder();
const t0 = performance.now();
const now = () => Math.round(performance.now() - t0);

function show(...parts) {
	const line = `[${now()}ms] ${parts.join(" ")}`;
	console.log(line);
	document.getElementById("log")?.append(`${line}\n`);
}

class Timeout extends Error {
	constructor(what, ms) {
		super(`${what}: nothing after ${ms} ms`);
		this.name = "Timeout";
	}
}

// Race a promise against a deadline (performance.now() value).
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
		if (err.code !== undefined) text += ` (code=${err.code})`;
		if (err.cause) text += ` caused by ${describe(err.cause)}`;
		return text;
	}
	return String(err);
}

async function connect(url, webtransport, ms) {
	// No WebSocket fallback: this scenario is about WebTransport, and a fallback would hide it.
	return await Moq.Connection.connect(new URL(url), {
		websocket: { enabled: false },
		webtransport,
		signal: AbortSignal.timeout(ms),
	});
}

/**
 * config: {
 *   url:               relay URL as a user would give it (http://host:port/path: the library
 *                      fetches /certificate.sha256 itself and pins it),
 *   pinnedUrl, certificateHash:  optional second attempt (https:// URL with the hash passed
 *                      in), made only when the first fails, so the data path is still tested,
 *   connectTimeoutMs, announceTimeoutMs,
 *   subscriptions: [{ name, broadcast, track, frames?, durationMs?, timeoutMs }]
 *     frames:     stop after this many frames (not reaching it is an error),
 *     durationMs: collect for this long after the subscription is live, then stop.
 * }
 */
export async function run(config) {
	const result = { attempts: [], announced: [], subscriptions: {} };
	let connection;
	const tries = [{ url: config.url }];
	if (config.pinnedUrl) {
		tries.push({
			url: config.pinnedUrl,
			webtransport: { serverCertificateHashes: [{ algorithm: "sha-256", value: config.certificateHash }] },
		});
	}
	for (const attempt of tries) {
		const started = now();
		try {
			connection = await connect(attempt.url, attempt.webtransport, config.connectTimeoutMs);
			result.attempts.push({ url: attempt.url, pinned: !!attempt.webtransport, ok: true, ms: now() - started });
			show("connected", attempt.url, "version", connection.version, "transport", connection.transport);
			break;
		} catch (err) {
			result.attempts.push({
				url: attempt.url,
				pinned: !!attempt.webtransport,
				ok: false,
				ms: now() - started,
				error: describe(err),
			});
			show("connect failed", attempt.url, describe(err));
		}
	}
	if (!connection) return result;
	result.url = connection.url.toString();
	result.version = connection.version;
	result.transport = connection.transport;

	try {
		// Discovery: the relay must announce every broadcast we want (ANNOUNCE_REQUEST / ANNOUNCE).
		const wanted = new Set(config.subscriptions.map((s) => s.broadcast));
		const announced = connection.announced(Moq.Path.empty());
		const deadline = performance.now() + config.announceTimeoutMs;
		try {
			while (wanted.size > 0) {
				const event = await until(announced.next(), deadline, `announcement of ${[...wanted].join(", ")}`);
				if (!event) {
					result.announceError = "announcement stream ended";
					break;
				}
				result.announced.push({ path: event.path, active: event.active, at: now() });
				show("announced", event.path, event.active ? "active" : "ended");
				if (event.active) wanted.delete(event.path);
			}
		} catch (err) {
			result.announceError = describe(err);
		}
		announced.close();

		await Promise.all(config.subscriptions.map((spec) => subscribe(connection, spec, result)));
	} finally {
		connection.close();
	}
	return result;
}

async function subscribe(connection, spec, result) {
	const out = { frames: [], groups: [], info: undefined, error: undefined, end: undefined };
	result.subscriptions[spec.name] = out;
	const deadline = performance.now() + spec.timeoutMs;
	const broadcast = connection.consume(Moq.Path.from(spec.broadcast));
	const track = broadcast.subscribe(spec.track);
	try {
		// Resolves from TRACK_INFO / the subscribe reply on lite-05.
		const info = await until(track.info(), deadline, `${spec.name}: track info`);
		out.info = { ...info };
		out.readyAt = now();
		show(spec.name, "subscribed", JSON.stringify(out.info));
		void globalThis.moqReady?.(spec.name);

		const stop = spec.durationMs ? Math.min(deadline, performance.now() + spec.durationMs) : deadline;
		const done = () => spec.frames !== undefined && out.frames.length >= spec.frames;
		outer: while (!done()) {
			const group = await until(track.recvGroup(), stop, `${spec.name}: next group`);
			if (!group) {
				out.end = "track ended";
				break;
			}
			out.groups.push({ sequence: group.sequence, at: now() });
			for (;;) {
				const frame = await until(group.readFrame(), stop, `${spec.name}: next frame of group ${group.sequence}`);
				if (!frame) break;
				const payload = decoder.decode(frame.payload);
				out.frames.push({ group: group.sequence, payload, at: now() });
				show(spec.name, "group", group.sequence, "frame", JSON.stringify(payload));
				if (done()) break outer;
			}
		}
		if (done()) out.end = "enough frames";
	} catch (err) {
		if (err instanceof Timeout && spec.durationMs && out.readyAt !== undefined) {
			out.end = `collected for ${spec.durationMs} ms`;
		} else {
			out.error = describe(err);
			show(spec.name, "error", out.error);
		}
	} finally {
		track.close();
		broadcast.close();
	}
}

globalThis.moqInterop = { run };

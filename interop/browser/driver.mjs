// Drives headless Chromium (Debian's /usr/bin/chromium) through playwright-core: serves
// index.html + subscribe.js from this directory and /node_modules/ from the upstream npm
// cache on 127.0.0.1, opens the page, runs subscribe.js's run(config) and checks the result.
//
//   node driver.mjs CONFIG_JSON
//
// CONFIG_JSON: the page's config (see subscribe.js) plus
//   npm:          directory holding node_modules (with @moq/net and playwright-core),
//   chromium:     browser executable (default /usr/bin/chromium),
//   profile:      a fresh user-data-dir,
//   timeoutMs:    bound on the whole page run,
//   expect:       { version, transport, stdin: { name, frames: [...] }, clock: { name, minFrames } }
//
// stdout: "READY <name>" once a subscription is live (the scenario then starts publishing),
// "CHECK <name> ok" / "CHECK <name> fail <reason>" per check, "RESULT <json>" at the end.
// stderr: the page's console (every level), page errors, failed requests.
// Exits 0 when every check passed, 1 when one failed, 2 when the run itself broke.
import { readFile, stat } from "node:fs/promises";
import { createServer } from "node:http";
import { createRequire } from "node:module";
import { extname, join, normalize, resolve, sep } from "node:path";
import { fileURLToPath } from "node:url";

const HERE = fileURLToPath(new URL(".", import.meta.url));
const config = JSON.parse(process.argv[2] ?? "{}");
const NODE_MODULES = resolve(config.npm, "node_modules");
const { chromium } = createRequire(join(resolve(config.npm), "package.json"))("playwright-core");

const TYPES = { ".html": "text/html", ".js": "text/javascript", ".mjs": "text/javascript", ".json": "application/json" };
const PAGE_FILES = { "/": "index.html", "/index.html": "index.html", "/subscribe.js": "subscribe.js" };

const say = (line) => process.stdout.write(`${line}\n`);
const note = (line) => process.stderr.write(`${line}\n`);

// A tiny static server: the page from this directory, /node_modules/ from the cache.
function serve() {
	const server = createServer(async (req, res) => {
		const path = decodeURIComponent(new URL(req.url, "http://x").pathname);
		let file;
		if (PAGE_FILES[path]) {
			file = join(HERE, PAGE_FILES[path]);
		} else if (path.startsWith("/node_modules/")) {
			file = normalize(join(NODE_MODULES, path.slice("/node_modules/".length)));
			if (!file.startsWith(NODE_MODULES + sep)) file = undefined;
		}
		try {
			if (!file || !(await stat(file)).isFile()) throw new Error("not found");
			const body = await readFile(file);
			res.writeHead(200, { "content-type": TYPES[extname(file)] ?? "application/octet-stream", "cache-control": "no-store" });
			res.end(body);
		} catch {
			note(`http: 404 ${path}`);
			res.writeHead(404, { "content-type": "text/plain" });
			res.end("not found\n");
		}
	});
	return new Promise((ok, fail) => {
		server.once("error", fail);
		server.listen(0, "127.0.0.1", () => ok(server));
	});
}

function withTimeout(promise, ms, what) {
	let timer;
	return Promise.race([
		promise,
		new Promise((_, reject) => {
			timer = setTimeout(() => reject(new Error(`${what}: timed out after ${ms} ms`)), ms);
		}),
	]).finally(() => clearTimeout(timer));
}

// ---- checks ----------------------------------------------------------------------------

const checks = [];
function check(name, ok, reason) {
	checks.push({ name, ok, reason });
	say(ok ? `CHECK ${name} ok` : `CHECK ${name} fail ${reason}`);
}

function checkResult(result) {
	const expect = config.expect;
	const first = result.attempts?.[0];
	check(
		"browser-connect-http-url",
		first?.ok === true,
		first ? `${first.url}: ${first.error}` : "no connection attempt",
	);
	const connected = result.attempts?.find((a) => a.ok);
	check("browser-connect", !!connected, result.attempts?.map((a) => `${a.url}: ${a.error}`).join(" | ") || "no attempt");
	if (!connected) return;
	check(
		"browser-version",
		result.version === expect.version && result.transport === expect.transport,
		`negotiated ${result.version} over ${result.transport}, expected ${expect.version} over ${expect.transport}`,
	);
	check("browser-announced", !result.announceError, result.announceError);

	// stdin: frame-0..frame-N, all of them, in order (the feed starts after READY).
	{
		const { name, frames: sent } = expect.stdin;
		const sub = result.subscriptions?.[name];
		const got = sub?.frames.map((f) => f.payload) ?? [];
		const start = sent.indexOf(got[0]);
		const contiguous = start >= 0 && got.every((p, i) => p === sent[start + i]);
		let reason;
		if (!sub) reason = "no subscription";
		else if (got.length === 0) reason = `no frames (${sub.error ?? sub.end})`;
		else if (!contiguous) reason = `frames out of order or unknown: ${JSON.stringify(got)}`;
		else if (got.length !== sent.length)
			reason = `got ${got.length} of ${sent.length} frames ${JSON.stringify(got)} (${sub.error ?? sub.end})`;
		else if (sub.error) reason = sub.error;
		check("browser-stdin-frames", !reason, reason);
		// Group layout: with --group-size G, group k holds frames kG..kG+G-1.
		if (!reason && expect.stdin.groupSize) {
			const g = expect.stdin.groupSize;
			const bad = sub.frames.find((f, i) => f.group !== Math.floor(i / g));
			check(
				"browser-stdin-groups",
				!bad,
				bad && `frame ${JSON.stringify(bad.payload)} arrived in group ${bad.group}: ${JSON.stringify(sub.frames.map((f) => [f.group, f.payload]))}`,
			);
		}
	}

	// clock: per group, "YYYY-MM-DD HH:MM:" then consecutive "SS" frames.
	{
		const { name, minFrames } = expect.clock;
		const sub = result.subscriptions?.[name];
		let reason;
		if (!sub) reason = "no subscription";
		else if (sub.error) reason = sub.error;
		const groups = new Map();
		for (const f of sub?.frames ?? []) {
			if (!groups.has(f.group)) groups.set(f.group, []);
			groups.get(f.group).push(f.payload);
		}
		let seconds = 0;
		let previous;
		for (const [sequence, frames] of groups) {
			if (reason) break;
			const [head, ...rest] = frames;
			if (!/^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:$/.test(head)) {
				reason = `group ${sequence} starts with ${JSON.stringify(head)}, not "YYYY-MM-DD HH:MM:"`;
				break;
			}
			if (previous !== undefined && sequence !== previous + 1) reason = `group ${sequence} follows group ${previous}`;
			previous = sequence;
			for (let i = 0; i < rest.length && !reason; i++) {
				if (!/^\d{2}$/.test(rest[i]) || Number(rest[i]) > 59) reason = `group ${sequence}: bad seconds frame ${JSON.stringify(rest[i])}`;
				else if (i > 0 && Number(rest[i]) !== Number(rest[i - 1]) + 1)
					reason = `group ${sequence}: ${rest[i - 1]} followed by ${rest[i]}`;
			}
			seconds += rest.length;
		}
		if (!reason && seconds < minFrames) reason = `only ${seconds} seconds frames, expected at least ${minFrames}`;
		check("browser-clock-frames", !reason, reason);
	}
}

// ---- run -------------------------------------------------------------------------------

let browser;
let server;
let status = 2;
try {
	server = await serve();
	const origin = `http://127.0.0.1:${server.address().port}`;
	note(`driver: page at ${origin}/, node_modules from ${NODE_MODULES}`);
	browser = await withTimeout(
		chromium.launchPersistentContext(config.profile, {
			executablePath: config.chromium ?? "/usr/bin/chromium",
			headless: true, // --headless
			chromiumSandbox: false, // --no-sandbox
			args: ["--disable-background-networking", "--disable-component-update", "--disable-sync"],
			timeout: 20_000,
		}),
		25_000,
		"launching chromium",
	);
	note(`driver: chromium ${browser.browser()?.version() ?? "(persistent context)"}`);
	const page = browser.pages()[0] ?? (await browser.newPage());
	page.on("console", (msg) => note(`console.${msg.type()}: ${msg.text()}`));
	page.on("pageerror", (err) => note(`pageerror: ${err.stack ?? err}`));
	page.on("requestfailed", (req) => note(`requestfailed: ${req.method()} ${req.url()} ${req.failure()?.errorText}`));
	// Network-level messages (CORS refusals, certificate errors, WebTransport handshake
	// failures) reach DevTools through the Log domain, not the console API.
	const cdp = await browser.newCDPSession(page);
	cdp.on("Log.entryAdded", ({ entry }) => note(`log.${entry.source}.${entry.level}: ${entry.text}${entry.url ? ` (${entry.url})` : ""}`));
	await cdp.send("Log.enable");
	// CORS refusals are reported only as DevTools issues.
	cdp.on("Audits.issueAdded", ({ issue }) => note(`issue.${issue.code}: ${JSON.stringify(issue.details)}`));
	await cdp.send("Audits.enable");
	await page.exposeFunction("moqReady", (name) => say(`READY ${name}`));
	await page.goto(`${origin}/`, { timeout: 10_000 });
	await page.waitForFunction(() => globalThis.moqInterop !== undefined, null, { timeout: 10_000 });
	const result = await withTimeout(
		page.evaluate((c) => globalThis.moqInterop.run(c), config),
		config.timeoutMs,
		"page run",
	);
	checkResult(result);
	say(`RESULT ${JSON.stringify(result)}`);
	status = checks.every((c) => c.ok) ? 0 : 1;
} catch (err) {
	note(`driver: ${err.stack ?? err}`);
	say(`CHECK browser-run fail ${String(err.message ?? err).split("\n")[0]}`);
	status = 2;
} finally {
	await withTimeout(browser?.close() ?? Promise.resolve(), 5_000, "closing chromium").catch((e) => note(`driver: ${e}`));
	server?.close();
	server?.closeAllConnections?.();
}
process.exit(status);

// Drives one browser engine through watch.html: the @moq/net 0.3.4 library, unmodified,
// connecting to a relay by itself (WebTransport or its WebSocket fallback, the library's
// choice), watching a clock and optionally publishing one.
//
//   node engines.mjs CONFIG_JSON
//
// Engines (all Debian packages, no downloaded browser builds):
//   chromium         /usr/bin/chromium over CDP (puppeteer-core)
//   chromium-safari  the same with a Safari user agent, so the library itself picks WebSocket
//   firefox          /usr/bin/firefox-esr over WebDriver BiDi (puppeteer-core, browser: "firefox")
//   webkit           WebKitGTK's MiniBrowser through WebKitWebDriver (selenium-webdriver), on
//                    an Xvfb display this driver starts (-displayfd: safe to run in parallel)
//
// CONFIG_JSON:
//   engine, npm (directory holding node_modules), profile (a fresh directory for this run),
//   chromium / firefox / webkitDriver / miniBrowser: executables (Debian paths by default),
//   timeoutMs: bound on the page run, clockOut: file for the clock lines the page saw
//              ("LINE<TAB>ARRIVAL_MS" each),
//   stopFile: once this file exists the page stops publishing,
//   expect: { transport },
//   page: the page's config (see watch.js).
//
// stdout: "PUBLISHING <broadcast>" once the page publishes, "CHECK <name> ok|fail <reason>",
// "RESULT <json>" (what the page saw) and "PROBE <json>" (what probe.js recorded).
// stderr: the page's log and console. Exit 0 when every check passed, 1 when one failed,
// 2 when the run itself broke.
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdir, readFile, stat, writeFile } from "node:fs/promises";
import { createServer } from "node:http";
import { createRequire } from "node:module";
import { createServer as createTcpServer } from "node:net";
import { extname, join, normalize, resolve, sep } from "node:path";
import { fileURLToPath } from "node:url";

const HERE = fileURLToPath(new URL(".", import.meta.url));
const config = JSON.parse(process.argv[2] ?? "{}");
const NODE_MODULES = resolve(config.npm, "node_modules");
const requireNpm = createRequire(join(resolve(config.npm), "package.json"));

// A current Safari on macOS: bowser reads it as Safari 18, for which @moq/net 0.3.4 turns
// WebTransport off (isWebTransportUserAgentSupported: safari "<0") and goes to WebSocket.
const SAFARI_UA =
	"Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.5 Safari/605.1.15";

const TYPES = { ".html": "text/html", ".js": "text/javascript", ".mjs": "text/javascript", ".json": "application/json" };
const PAGE_FILES = { "/": "watch.html", "/watch.html": "watch.html", "/watch.js": "watch.js", "/probe.js": "probe.js" };

const say = (line) => process.stdout.write(`${line}\n`);
const note = (line) => process.stderr.write(`${line}\n`);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// A tiny static server on 127.0.0.1: the page from this directory, /node_modules/ from the cache.
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

function freePort() {
	return new Promise((ok, fail) => {
		const s = createTcpServer();
		s.once("error", fail);
		s.listen(0, "127.0.0.1", () => {
			const { port } = s.address();
			s.close(() => ok(port));
		});
	});
}

// Child processes this driver started (Xvfb, WebKitWebDriver), stopped on exit.
const children = [];
function child(cmd, args, options) {
	const proc = spawn(cmd, args, options);
	children.push(proc);
	proc.on("error", (err) => note(`${cmd}: ${err.message}`));
	return proc;
}
function stopChildren() {
	for (const proc of children) {
		if (proc.exitCode === null && proc.signalCode === null) proc.kill("SIGTERM");
	}
}
process.on("exit", stopChildren);

// An Xvfb display of our own: Xvfb picks a free display number and writes it to fd 3.
async function startXvfb() {
	const proc = child("Xvfb", ["-displayfd", "3", "-screen", "0", "1280x800x24", "-nolisten", "tcp"], {
		stdio: ["ignore", "ignore", "pipe", "pipe"],
	});
	let errors = "";
	proc.stderr.on("data", (d) => {
		errors += d;
	});
	const display = await withTimeout(
		new Promise((ok, fail) => {
			let text = "";
			proc.stdio[3].on("data", (d) => {
				text += d;
				if (text.includes("\n")) ok(`:${text.trim()}`);
			});
			proc.once("exit", (code) => fail(new Error(`Xvfb exited ${code}: ${errors.trim().split("\n").slice(-3).join(" | ")}`)));
		}),
		10_000,
		"starting Xvfb",
	);
	note(`driver: Xvfb on display ${display}`);
	return display;
}

// Each engine as { name, version, evaluate(expression) -> value, close() }.
async function launchPuppeteer(engine) {
	const puppeteer = requireNpm("puppeteer-core");
	const firefox = engine === "firefox";
	const options = firefox
		? {
				browser: "firefox",
				executablePath: config.firefox ?? "/usr/bin/firefox-esr",
				headless: true,
				userDataDir: config.profile,
				timeout: 30_000,
			}
		: {
				browser: "chrome",
				executablePath: config.chromium ?? "/usr/bin/chromium",
				headless: true,
				userDataDir: config.profile,
				timeout: 30_000,
				args: [
					"--no-sandbox",
					"--disable-background-networking",
					"--disable-component-update",
					"--disable-sync",
					...(engine === "chromium-safari" ? [`--user-agent=${SAFARI_UA}`] : []),
				],
			};
	const browser = await withTimeout(puppeteer.launch(options), 35_000, `launching ${engine}`);
	const version = await browser.version();
	const page = await browser.newPage();
	page.on("console", (msg) => note(`console.${msg.type()}: ${msg.text()}`));
	page.on("pageerror", (err) => note(`pageerror: ${err?.stack ?? err}`));
	page.on("requestfailed", (req) => note(`requestfailed: ${req.method()} ${req.url()} ${req.failure()?.errorText}`));
	return {
		version,
		goto: (url) => page.goto(url, { timeout: 15_000 }),
		evaluate: (expression) => page.evaluate(expression),
		close: () => browser.close(),
	};
}

async function launchWebKit() {
	const { Builder } = requireNpm("selenium-webdriver");
	const display = await startXvfb();
	const port = await freePort();
	const home = join(config.profile, "home");
	await mkdir(home, { recursive: true });
	// MiniBrowser inherits this environment: its own display, and a home of its own so
	// parallel runs share no cache or storage.
	const env = {
		...process.env,
		DISPLAY: display,
		HOME: home,
		XDG_CONFIG_HOME: join(home, "config"),
		XDG_CACHE_HOME: join(home, "cache"),
		XDG_DATA_HOME: join(home, "data"),
	};
	const driverProc = child(config.webkitDriver ?? "/usr/bin/WebKitWebDriver", [`--port=${port}`, "--host=127.0.0.1"], {
		env,
		stdio: ["ignore", "pipe", "pipe"],
	});
	driverProc.stdout.on("data", (d) => note(`webkitwebdriver: ${String(d).trimEnd()}`));
	driverProc.stderr.on("data", (d) => note(`webkitwebdriver: ${String(d).trimEnd()}`));
	const server = `http://127.0.0.1:${port}`;
	const deadline = Date.now() + 10_000;
	for (;;) {
		try {
			const r = await fetch(`${server}/status`);
			if (r.ok) break;
		} catch {
			// not listening yet
		}
		if (Date.now() > deadline) throw new Error(`WebKitWebDriver did not answer on ${server}`);
		await sleep(100);
	}
	const capabilities = {
		browserName: "MiniBrowser",
		"webkitgtk:browserOptions": {
			binary: config.miniBrowser ?? "/usr/lib/x86_64-linux-gnu/webkit2gtk-4.1/MiniBrowser",
			args: ["--automation"],
		},
	};
	const driver = await withTimeout(
		new Builder().usingServer(server).withCapabilities(capabilities).build(),
		30_000,
		"starting MiniBrowser",
	);
	const caps = await driver.getCapabilities();
	return {
		version: `${caps.get("browserName")} ${caps.get("browserVersion")}`,
		goto: (url) => driver.get(url),
		evaluate: (expression) => driver.executeScript(`return ${expression};`),
		close: async () => {
			await driver.quit();
		},
	};
}

function launch(engine) {
	switch (engine) {
		case "chromium":
		case "chromium-safari":
		case "firefox":
			return launchPuppeteer(engine);
		case "webkit":
			return launchWebKit();
		default:
			throw new Error(`unknown engine ${engine}`);
	}
}

const checks = [];
function check(name, ok, reason) {
	checks.push({ name, ok, reason });
	say(ok ? `CHECK ${name} ok` : `CHECK ${name} fail ${reason}`);
}

// ---- run -------------------------------------------------------------------------------

const engine = config.engine;
let browser;
let server;
let status = 2;

// Close the browser, the page server and our children; bounded.
async function teardown() {
	await withTimeout(browser?.close() ?? Promise.resolve(), 10_000, `closing ${engine}`).catch((e) => note(`driver: ${e}`));
	server?.close();
	server?.closeAllConnections?.();
	stopChildren();
}
// Stopped from outside (the scenario's `timeout`, or its cleanup): leave no browser behind.
for (const signal of ["SIGTERM", "SIGINT"]) {
	process.once(signal, () => {
		note(`driver: ${signal}, closing ${engine}`);
		void teardown().finally(() => process.exit(2));
	});
}

try {
	await mkdir(config.profile, { recursive: true });
	server = await serve();
	const origin = `http://127.0.0.1:${server.address().port}`;
	browser = await launch(engine);
	note(`driver: ${engine} is ${browser.version}; page at ${origin}/`);
	await browser.goto(`${origin}/`);
	const ready = Date.now() + 10_000;
	while (!(await browser.evaluate("globalThis.moqInterop !== undefined"))) {
		if (Date.now() > ready) throw new Error("the page did not load @moq/net (see the console above)");
		await sleep(100);
	}
	await browser.evaluate(`globalThis.moqInterop.start(${JSON.stringify(config.page)})`);

	// Poll the page: works the same over CDP, BiDi and classic WebDriver.
	const deadline = Date.now() + config.timeoutMs;
	let printed = 0;
	let announcedPublish = false;
	let asked = false;
	let state;
	for (;;) {
		state = await browser.evaluate("globalThis.moqInterop.state()");
		for (; printed < state.log.length; printed++) note(`page: ${state.log[printed]}`);
		if (state.publishing && !announcedPublish) {
			announcedPublish = true;
			say(`PUBLISHING ${state.publishing}`);
		}
		if (state.done) break;
		if (!asked && config.stopFile && existsSync(config.stopFile)) {
			asked = true;
			await browser.evaluate("globalThis.moqInterop.stopPublishing()");
		}
		if (Date.now() > deadline) throw new Error(`page still ${state.phase} after ${config.timeoutMs} ms`);
		await sleep(200);
	}

	const result = state.result ?? {};
	// One line per clock frame: the line, a tab, when it arrived (ms since the epoch).
	const clock = result.clock ?? { lines: [], arrivals: [] };
	await writeFile(config.clockOut, clock.lines.map((l, i) => `${l}\t${clock.arrivals[i]}\n`).join(""));
	say(`RESULT ${JSON.stringify({ engine, browser: browser.version, ...result })}`);
	say(`PROBE ${JSON.stringify(state.probe ?? {})}`);

	check(`${config.name}-connect`, !!result.version, result.connectError ?? result.fatal ?? "no connection");
	if (result.version) {
		const want = config.expect?.transport;
		check(
			`${config.name}-transport`,
			!want || result.transport === want,
			`the library chose ${result.transport} (${result.version}), expected ${want}`,
		);
		const version = config.expect?.version;
		if (version) {
			check(`${config.name}-version`, result.version === version, `negotiated ${result.version}, expected ${version}`);
		}
	}
	if (config.page.publish && result.version) {
		const p = result.publish;
		check(`${config.name}-publish`, !!p && !p.error && p.frames > 0, p ? (p.error ?? `${p.frames} frames`) : "never published");
	}
	status = checks.every((c) => c.ok) ? 0 : 1;
} catch (err) {
	note(`driver: ${err?.stack ?? err}`);
	say(`CHECK ${config.name}-run fail ${String(err?.message ?? err).split("\n")[0]}`);
	status = 2;
} finally {
	await teardown();
}
process.exit(status);

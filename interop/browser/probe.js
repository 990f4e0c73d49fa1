// Loaded as a classic script before @moq/net, so the library sees the wrapped globals.
// It observes, it does not steer: every WebTransport, WebSocket and WebSocketStream the
// library creates is the browser's own object with the same arguments; this only records
//   - what each transport was asked for (URL, the subprotocols offered, whether a
//     certificate hash was pinned) and what it reports once open (`.protocol`), and
//   - the first bytes written to and read from the first few streams of each
//     WebTransport session, and the first WebSocket messages each way,
// so a scenario can say exactly what the library put on the wire in this engine.
// Everything lands in globalThis.moqProbe, which the driver reads back.
(() => {
	const MAX_STREAMS = 4; // streams recorded per session and direction
	const MAX_BYTES = 256; // bytes recorded per stream or socket direction
	const MAX_MESSAGES = 4; // WebSocket messages recorded per direction

	const probe = { webtransport: [], websocket: [], websocketStream: [], errors: [] };
	globalThis.moqProbe = probe;

	const hex = (bytes) => Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join(" ");
	const asBytes = (chunk) => {
		if (chunk instanceof Uint8Array) return chunk;
		if (chunk instanceof ArrayBuffer) return new Uint8Array(chunk);
		if (ArrayBuffer.isView(chunk)) return new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength);
		return undefined;
	};

	// A byte record: the first MAX_BYTES bytes seen, as hex, and the total count.
	const recorder = () => {
		const rec = { hex: "", bytes: 0 };
		let kept = 0;
		rec.add = (chunk) => {
			const bytes = asBytes(chunk);
			if (!bytes) return;
			rec.bytes += bytes.byteLength;
			if (kept >= MAX_BYTES) return;
			const take = bytes.subarray(0, MAX_BYTES - kept);
			kept += take.byteLength;
			rec.hex = rec.hex ? `${rec.hex} ${hex(take)}` : hex(take);
		};
		return rec;
	};

	// Streams we watch, and the writers/readers obtained from them. The library reads and
	// writes through getWriter()/getReader(), so those are the places to listen.
	const watched = new WeakMap(); // stream -> recorder
	const writers = new WeakMap(); // writer/reader -> recorder
	const watch = (stream, rec) => {
		if (stream) watched.set(stream, rec);
	};
	const getWriter = WritableStream.prototype.getWriter;
	WritableStream.prototype.getWriter = function (...args) {
		const writer = getWriter.apply(this, args);
		const rec = watched.get(this);
		if (rec) writers.set(writer, rec);
		return writer;
	};
	const write = WritableStreamDefaultWriter.prototype.write;
	WritableStreamDefaultWriter.prototype.write = function (chunk, ...rest) {
		writers.get(this)?.add(chunk);
		return write.call(this, chunk, ...rest);
	};
	const getReader = ReadableStream.prototype.getReader;
	ReadableStream.prototype.getReader = function (...args) {
		const reader = getReader.apply(this, args);
		const rec = watched.get(this);
		if (rec && reader instanceof ReadableStreamDefaultReader) writers.set(reader, rec);
		return reader;
	};
	const read = ReadableStreamDefaultReader.prototype.read;
	ReadableStreamDefaultReader.prototype.read = function (...args) {
		const rec = writers.get(this);
		const pending = read.apply(this, args);
		if (!rec) return pending;
		return pending.then((result) => {
			if (!result.done) rec.add(result.value);
			return result;
		});
	};

	const NativeWebTransport = globalThis.WebTransport;
	if (typeof NativeWebTransport === "function") {
		globalThis.WebTransport = class extends NativeWebTransport {
			constructor(url, options) {
				super(url, options);
				const entry = {
					url: String(url),
					protocols: options?.protocols ?? null,
					pinnedHashes: options?.serverCertificateHashes?.length ?? 0,
					hasProtocolAttribute: "protocol" in NativeWebTransport.prototype,
					bidi: [],
					uni: [],
				};
				probe.webtransport.push(entry);
				this.ready.then(
					() => {
						entry.ready = true;
						entry.protocol = this.protocol ?? null;
					},
					(err) => {
						entry.ready = false;
						entry.error = String(err?.message ?? err);
					},
				);
				this.__moqProbe = entry;
			}
			async createBidirectionalStream(...args) {
				const stream = await super.createBidirectionalStream(...args);
				const entry = this.__moqProbe;
				if (entry.bidi.length < MAX_STREAMS) {
					const sent = recorder();
					const received = recorder();
					entry.bidi.push({ sent, received });
					watch(stream.writable, sent);
					watch(stream.readable, received);
				}
				return stream;
			}
			async createUnidirectionalStream(...args) {
				const stream = await super.createUnidirectionalStream(...args);
				const entry = this.__moqProbe;
				if (entry.uni.length < MAX_STREAMS) {
					const sent = recorder();
					entry.uni.push({ sent });
					watch(stream, sent);
				}
				return stream;
			}
		};
	}

	const NativeWebSocket = globalThis.WebSocket;
	if (typeof NativeWebSocket === "function") {
		const Probed = class extends NativeWebSocket {
			constructor(url, protocols) {
				super(url, protocols);
				const entry = {
					url: String(url),
					offered: protocols === undefined ? [] : [].concat(protocols),
					sent: [],
					received: [],
				};
				probe.websocket.push(entry);
				this.addEventListener("open", () => {
					entry.open = true;
					entry.protocol = this.protocol;
				});
				this.addEventListener("close", (e) => {
					entry.closed = { code: e.code, reason: e.reason, wasClean: e.wasClean };
				});
				this.addEventListener("message", (e) => {
					if (entry.received.length >= MAX_MESSAGES) return;
					const rec = recorder();
					rec.add(e.data);
					entry.received.push(rec);
				});
				this.__moqProbe = entry;
			}
			send(data) {
				const entry = this.__moqProbe;
				if (entry && entry.sent.length < MAX_MESSAGES) {
					const rec = recorder();
					rec.add(data);
					entry.sent.push(rec);
				}
				return super.send(data);
			}
		};
		globalThis.WebSocket = Probed;
	}

	// Chromium's native WebSocketStream (the library prefers it where it exists).
	const NativeWebSocketStream = globalThis.WebSocketStream;
	if (typeof NativeWebSocketStream === "function") {
		globalThis.WebSocketStream = class extends NativeWebSocketStream {
			constructor(url, options) {
				super(url, options);
				const entry = { url: String(url), offered: options?.protocols ?? [] };
				probe.websocketStream.push(entry);
				this.opened.then(
					(opened) => {
						entry.open = true;
						entry.protocol = opened.protocol;
						entry.sent = recorder();
						entry.received = recorder();
						watch(opened.writable, entry.sent);
						watch(opened.readable, entry.received);
					},
					(err) => {
						entry.open = false;
						entry.error = String(err?.message ?? err);
					},
				);
			}
		};
	}
})();

// Prints what one engine run saw, for a scenario's output: the transport and version the
// library negotiated, and what probe.js recorded on the wire.
//
//   node summary.mjs RESULT_JSON PROBE_JSON
const result = JSON.parse(process.argv[2] || "{}");
const probe = JSON.parse(process.argv[3] || "{}");
const out = (line) => process.stdout.write(`${line}\n`);

out(`${result.engine}: ${result.browser}`);
if (result.version) out(`negotiated ${result.version} over ${result.transport} in ${result.connectMs} ms (${result.url})`);
else out(`no connection: ${result.connectError ?? result.fatal ?? "unknown"}`);
const clock = result.clock ?? {};
out(`watched clock: ${clock.lines?.length ?? 0} lines${clock.lines?.length ? ` (${clock.lines[0]} .. ${clock.lines.at(-1)})` : ""}${clock.error ? `, error ${clock.error}` : ""}${clock.announceError ? `, announce ${clock.announceError}` : ""}`);
if (result.publish) {
	const p = result.publish;
	out(`published its clock: ${p.frames} frames in ${p.groups} groups (${p.error ?? p.end})`);
}

for (const [i, wt] of (probe.webtransport ?? []).entries()) {
	const offered = wt.protocols ? wt.protocols.join(",") : "(none)";
	out(`webtransport[${i}] ${wt.url}: offered protocols [${offered}], ${wt.pinnedHashes} pinned hash(es), ready=${wt.ready}${wt.error ? ` (${wt.error})` : ""}`);
	out(
		`  WebTransport.prototype.protocol ${wt.hasProtocolAttribute ? "exists" : "is missing"}; .protocol after ready: ${JSON.stringify(wt.protocol ?? null)}`,
	);
	for (const [j, s] of (wt.bidi ?? []).entries()) {
		out(`  bidi[${j}] sent ${s.sent.bytes} bytes: ${s.sent.hex || "-"}`);
		out(`  bidi[${j}] received ${s.received.bytes} bytes: ${s.received.hex || "-"}`);
	}
	for (const [j, s] of (wt.uni ?? []).entries()) out(`  uni[${j}] sent ${s.sent.bytes} bytes: ${s.sent.hex || "-"}`);
}
for (const [i, ws] of (probe.websocket ?? []).entries()) {
	out(`websocket[${i}] ${ws.url}: offered Sec-WebSocket-Protocol [${ws.offered.join(", ")}]`);
	out(`  open=${!!ws.open}, selected ${JSON.stringify(ws.protocol ?? null)}${ws.closed ? `, closed ${JSON.stringify(ws.closed)}` : ""}`);
	for (const [j, m] of (ws.sent ?? []).entries()) out(`  sent[${j}] ${m.bytes} bytes: ${m.hex}`);
}
for (const [i, ws] of (probe.websocketStream ?? []).entries()) {
	out(`websocketstream[${i}] ${ws.url}: offered Sec-WebSocket-Protocol [${ws.offered.join(", ")}]`);
	out(`  open=${!!ws.open}, selected ${JSON.stringify(ws.protocol ?? null)}${ws.error ? ` (${ws.error})` : ""}`);
	if (ws.sent) out(`  sent ${ws.sent.bytes} bytes, first: ${ws.sent.hex || "-"}`);
}

// roomsim run explorer. Reads the JSON block `#data` written by analysis/src/explorer.rs:
// events as columns (ids, interned types, senders and (type, state_key) keys, layer, pos,
// prev and auth indices, verdict class), their PDUs without what the columns say, decisions as
// columns (event, server, verdict, time, stage, reason, change to the server's forward
// extremities), a table of delta-encoded states (the state before each event, each server's
// current state over time), faults, client actions, divergence episodes. Draws on a canvas.
"use strict";
(function () {
  var errors = 0;
  window.addEventListener("error", function () {
    errors += 1;
    document.body.setAttribute("data-js-errors", String(errors));
  });
  var D = JSON.parse(document.getElementById("data").textContent);
  var N = D.ids.length, GX = 30, GY = 40, R = 9, i, j, k;
  var $ = function (id) { return document.getElementById(id); };
  var canvas = $("dag"), ctx = canvas.getContext("2d");
  var VERDICT_COLOUR = { accepted: "#5cb85c", soft_failed: "#f0a030", rejected: "#d9534f", outlier: "#9b6bd3",
    dropped: "#9aa0a6", unknown: "#8fb3c9" };
  var VERDICT_NAME = { accepted: "accepted", soft_failed: "soft-failed on some server", rejected: "rejected",
    outlier: "outlier only", dropped: "dropped", unknown: "no decision" };
  var TYPE_COLOUR = { "m.room.create": "#1f77b4", "m.room.member": "#2ca02c", "m.room.power_levels": "#d62728",
    "m.room.join_rules": "#9467bd", "m.room.message": "#8c8c8c", "m.room.name": "#17becf", "m.room.topic": "#17becf",
    "m.room.history_visibility": "#bcbd22", "m.room.third_party_invite": "#e377c2", "m.room.redaction": "#8c564b",
    "m.room.server_acl": "#ff7f0e" };
  var RANK = { rejected: 5, soft_failed: 4, accepted: 3, outlier: 2, dropped: 1 };
  var NOT_HELD = "#e9ebee", ONLY_A = "#2f6fde", ONLY_B = "#c2185b", DIFFERS = "#7b1fa2";
  var MAX_ROWS = 400;

  // Events, rebuilt from the columns.
  var E = new Array(N);
  for (i = 0; i < N; i++) {
    var key = D.key[i];
    E[i] = { id: D.ids[i], type: D.types[D.ty[i]], sk: key >= 0 ? D.keys[key][1] : undefined, key: key,
      sender: D.senders[D.snd[i]], depth: D.depth[i], layer: D.layer[i], pos: D.pos[i], prev: D.prev[i],
      auth: D.auth[i], v: D.classes[D.v[i]] };
  }
  var refWhy = {};
  D.ref_rejected.forEach(function (r) { refWhy[r[0]] = [D.strings[r[1]], D.strings[r[2]]]; });

  // Geometry.
  var X = new Float64Array(N), Y = new Float64Array(N), children = [];
  for (i = 0; i < N; i++) children.push([]);
  for (i = 0; i < N; i++) {
    X[i] = (E[i].pos - (D.widths[E[i].layer] - 1) / 2) * GX;
    Y[i] = E[i].layer * GY;
    for (j = 0; j < E[i].prev.length; j++) children[E[i].prev[j]].push(i);
  }
  var byLayer = [];
  for (i = 0; i < D.layers; i++) byLayer.push([]);
  for (i = 0; i < N; i++) byLayer[E[i].layer].push(i);
  for (i = 0; i < byLayer.length; i++) byLayer[i].sort(function (a, b) { return X[a] - X[b]; });
  var byId = {};
  for (i = 0; i < N; i++) byId[E[i].id] = i;

  // Decisions.
  var DEC = D.dec, ND = DEC.e.length, S = D.servers.length;
  var decisionsOf = [], byServer = [], backfilled = {};
  for (i = 0; i < N; i++) decisionsOf.push([]);
  for (i = 0; i < S; i++) byServer.push([]);
  for (k = 0; k < ND; k++) { decisionsOf[DEC.e[k]].push(k); byServer[DEC.s[k]].push(k); }
  DEC.bf.forEach(function (k) { backfilled[k] = true; });
  // Times come as differences; stage and reason only where there is one.
  for (k = 1; k < ND; k++) DEC.t[k] += DEC.t[k - 1];
  var stageOf = {}, reasonOf = {};
  DEC.why.forEach(function (w) { stageOf[w[0]] = w[1]; reasonOf[w[0]] = w[2]; });
  // Extremity changes: 1 = the event entered and its prev events left, 2 = it entered.
  for (k = 0; k < ND; k++) {
    if (DEC.x[k] === 1) DEC.x[k] = [1].concat(E[DEC.e[k]].prev.filter(function (p, n, a) { return a.indexOf(p) === n; }));
    else if (DEC.x[k] === 2) DEC.x[k] = [1];
  }
  function verdictOf(k) { return D.verdicts[DEC.d[k]]; }
  function str(x) { return x !== undefined && x >= 0 ? D.strings[x] : ""; }
  var forwardAll = {};
  D.forward.forEach(function (q) { forwardAll[q] = true; });

  // States: entry s is entry base[s] (or the empty state) with delta[s] applied.
  var stateCache = {}, cached = 0;
  function stateOf(s) {
    if (s === undefined || s < 0) return null;
    if (stateCache[s]) return stateCache[s];
    var chain = [], start = null, x;
    for (x = s; x >= 0; x = D.states.base[x]) {
      if (stateCache[x]) { start = stateCache[x]; break; }
      chain.push(x);
      if (D.states.base[x] >= x) break; // malformed: bases precede their entries
    }
    var m = start ? new Map(start) : new Map();
    for (var c = chain.length - 1; c >= 0; c--) {
      var d = D.states.delta[chain[c]];
      for (var q = 0; q < d.length; q += 2) { if (d[q + 1] < 0) m.delete(d[q]); else m.set(d[q], d[q + 1]); }
    }
    if (cached > 200) { stateCache = {}; cached = 0; }
    stateCache[s] = m; cached++;
    return m;
  }
  function sortedKeys(keys) {
    return keys.sort(function (a, b) {
      var x = D.keys[a], y = D.keys[b];
      return x[0] < y[0] ? -1 : x[0] > y[0] ? 1 : x[1] < y[1] ? -1 : x[1] > y[1] ? 1 : 0;
    });
  }

  // View state.
  var view = { s: 1, ox: 0, oy: 0 }, W = 0, H = 0, dpr = window.devicePixelRatio || 1;
  var selected = -1, matches = null, colourBy = "verdict", server = -1, serverB = -1;
  var tEnd = D.t_end_us || 0, tNow = tEnd;
  var status = new Array(N), statusB = null, fwd = forwardAll, currentOpen = false;

  function fmtT(us) { return (us / 1e6).toFixed(3) + " s"; }
  function short(id) { return id.length > 12 ? id.slice(0, 12) + "…" : id; }
  function esc(s) {
    return String(s).replace(/[&<>"]/g, function (c) { return { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" }[c]; });
  }
  function typeColour(t) {
    if (TYPE_COLOUR[t]) return TYPE_COLOUR[t];
    var h = 0;
    for (var q = 0; q < t.length; q++) h = (h * 31 + t.charCodeAt(q)) % 360;
    return "hsl(" + h + ",55%,55%)";
  }
  function held(st) { return st && st !== "dropped"; }

  // A server's view at tNow: its last decision on each event by then (null: none yet).
  function statusOf(s) {
    var out = new Array(N), list = byServer[s];
    for (var q = 0; q < N; q++) out[q] = null;
    for (var p = 0; p < list.length; p++) {
      var d = list[p];
      if (DEC.t[d] <= tNow) out[DEC.e[d]] = verdictOf(d);
    }
    return out;
  }
  // Its forward extremities at tNow, replaying the changes its decisions made.
  function extremitiesOf(s) {
    var set = {}, list = byServer[s];
    for (var p = 0; p < list.length; p++) {
      var d = list[p], x = DEC.x[d];
      if (DEC.t[d] > tNow || !x) continue;
      for (var q = 1; q < x.length; q++) delete set[x[q]];
      if (x[0]) set[DEC.e[d]] = true;
    }
    return set;
  }
  // Its current state at tNow: [entry, since] (entry -1: none).
  function currentOf(s) {
    var list = D.current[s] || [], at = [-1, 0];
    for (var p = 0; p < list.length; p += 2) if (list[p] <= tNow) at = [list[p + 1], list[p]];
    return at;
  }

  function recompute() {
    var q, d;
    if (server >= 0) {
      status = statusOf(server);
      fwd = extremitiesOf(server);
    } else {
      for (q = 0; q < N; q++) status[q] = ND ? null : E[q].v;
      for (d = 0; d < ND; d++) {
        if (DEC.t[d] > tNow) continue;
        var v = verdictOf(d), e = DEC.e[d];
        if (!status[e] || (RANK[v] || 0) > (RANK[status[e]] || 0)) status[e] = v;
      }
      fwd = tNow >= tEnd ? forwardAll : {};
    }
    statusB = diffing() ? statusOf(serverB) : null;
    serverPanel();
  }
  function diffing() { return server >= 0 && serverB >= 0 && serverB !== server; }

  function fill(q) {
    var st = status[q];
    if (statusB) {
      var a = held(st), b = held(statusB[q]);
      if (a && !b) return ONLY_A;
      if (b && !a) return ONLY_B;
    }
    if (!st) return NOT_HELD;
    if (colourBy === "type") return typeColour(E[q].type);
    return VERDICT_COLOUR[st] || VERDICT_COLOUR.unknown;
  }

  function resize() {
    var r = canvas.parentNode.getBoundingClientRect();
    W = Math.max(100, r.width); H = Math.max(100, r.height);
    canvas.width = Math.round(W * dpr); canvas.height = Math.round(H * dpr);
  }
  function fit() {
    var minX = Infinity, maxX = -Infinity, minY = 0, maxY = Math.max(0, D.layers - 1) * GY;
    for (var q = 0; q < N; q++) { if (X[q] < minX) minX = X[q]; if (X[q] > maxX) maxX = X[q]; }
    if (!N) { minX = 0; maxX = 0; }
    var bw = maxX - minX + 4 * R, bh = maxY - minY + 4 * R;
    view.s = Math.min(W / bw, H / bh, 2.5);
    view.ox = W / 2 - view.s * (minX + maxX) / 2;
    view.oy = H / 2 - view.s * (minY + maxY) / 2;
  }
  function sx(q) { return view.ox + view.s * X[q]; }
  function sy(q) { return view.oy + view.s * Y[q]; }

  // Level of detail: edges only once events are at least ~1 px apart, labels from a radius of
  // 11 px; anything outside the view is skipped.
  function draw() {
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, W, H);
    var r = R * view.s, m = Math.max(r, 2), q, c, p;
    var visible = function (x) { var a = sx(x), b = sy(x); return a >= -m && a <= W + m && b >= -m && b <= H + m; };
    if (view.s * GX >= 2) {
      ctx.lineWidth = Math.min(1.2, Math.max(0.3, view.s));
      ctx.strokeStyle = "rgba(90,100,115,0.35)";
      ctx.beginPath();
      for (q = 0; q < N; q++) {
        var x1 = sx(q), y1 = sy(q);
        for (c = 0; c < E[q].prev.length; c++) {
          p = E[q].prev[c];
          var x2 = sx(p), y2 = sy(p);
          if ((y1 < 0 && y2 < 0) || (y1 > H && y2 > H) || (x1 < 0 && x2 < 0) || (x1 > W && x2 > W)) continue;
          ctx.moveTo(x1, y1); ctx.lineTo(x2, y2);
        }
      }
      ctx.stroke();
    }
    if (selected >= 0) {
      var s = E[selected];
      ctx.lineWidth = 2; ctx.strokeStyle = "#1f5fbf"; ctx.beginPath();
      s.prev.forEach(function (x) { ctx.moveTo(sx(selected), sy(selected)); ctx.lineTo(sx(x), sy(x)); });
      ctx.stroke();
      ctx.setLineDash([5, 4]); ctx.strokeStyle = "#a0522d"; ctx.beginPath();
      s.auth.forEach(function (x) { ctx.moveTo(sx(selected), sy(selected)); ctx.lineTo(sx(x), sy(x)); });
      ctx.stroke(); ctx.setLineDash([]);
    }
    // Nodes, batched by colour.
    var groups = {}, drawn = 0;
    for (q = 0; q < N; q++) {
      if (!visible(q)) continue;
      drawn++;
      var f = fill(q);
      (groups[f] || (groups[f] = [])).push(q);
    }
    Object.keys(groups).forEach(function (f) {
      ctx.fillStyle = f;
      var g = groups[f], x;
      if (r < 2) {
        var w = Math.max(1.5, 2 * r);
        for (x = 0; x < g.length; x++) ctx.fillRect(sx(g[x]) - w / 2, sy(g[x]) - w / 2, w, w);
      } else {
        ctx.beginPath();
        for (x = 0; x < g.length; x++) { ctx.moveTo(sx(g[x]) + r, sy(g[x])); ctx.arc(sx(g[x]), sy(g[x]), r, 0, 2 * Math.PI); }
        ctx.fill();
      }
    });
    // Rings: verdict when coloured by type, verdicts that differ between the two servers,
    // forward extremities, search matches, selection.
    var ring = function (x, colour, width, extra) {
      ctx.strokeStyle = colour; ctx.lineWidth = width; ctx.beginPath();
      ctx.arc(sx(x), sy(x), Math.max(r, 2) + extra, 0, 2 * Math.PI); ctx.stroke();
    };
    for (q = 0; q < N; q++) {
      if (!visible(q)) continue;
      if (colourBy === "type" && status[q] && status[q] !== "accepted") ring(q, VERDICT_COLOUR[status[q]] || "#888", 2.5, 1);
      if (statusB && held(status[q]) && held(statusB[q]) && status[q] !== statusB[q]) ring(q, DIFFERS, 2.5, 1.5);
      if (fwd[q]) ring(q, "#111", 2, 3);
      if (matches && matches[q]) ring(q, "#e6b800", 3, 5);
    }
    if (selected >= 0) ring(selected, "#1f5fbf", 3, 6);
    if (r >= 11) {
      ctx.fillStyle = "#1f2328"; ctx.font = "11px system-ui, sans-serif"; ctx.textBaseline = "middle";
      for (q = 0; q < N; q++) {
        if (!visible(q)) continue;
        var t = E[q].type.replace(/^m\.room\./, "") + (E[q].sk !== undefined && E[q].sk !== "" ? " " + E[q].sk : "");
        ctx.fillText(t + " · " + E[q].sender, sx(q) + r + 4, sy(q));
      }
    }
    document.body.setAttribute("data-events-drawn", String(drawn));
  }

  function hit(px, py) {
    var wy = (py - view.oy) / view.s, wx = (px - view.ox) / view.s;
    var l = Math.round(wy / GY), best = -1, bd = Infinity;
    for (var dl = -1; dl <= 1; dl++) {
      var row = byLayer[l + dl];
      if (!row) continue;
      for (var q = 0; q < row.length; q++) {
        var x = row[q], d = Math.hypot(X[x] - wx, Y[x] - wy);
        if (d < bd) { bd = d; best = x; }
      }
    }
    return bd * view.s <= Math.max(R * view.s, 6) + 2 ? best : -1;
  }

  function link(q) {
    if (q === undefined || q < 0) return '<span class="note">(not in this DAG)</span>';
    return '<a data-k="' + q + '" title="' + esc(E[q].id) + '"><span class="id">' + esc(short(E[q].id)) + "</span></a> " +
      esc(E[q].type.replace(/^m\.room\./, "")) + (E[q].sk !== undefined ? " <code>" + esc(E[q].sk) + "</code>" : "");
  }
  function links(list, max) {
    max = max || 50;
    if (!list.length) return '<p class="note">none</p>';
    return '<ul class="links">' + list.slice(0, max).map(function (q) { return "<li>" + link(q) + "</li>"; }).join("") +
      "</ul>" + (list.length > max ? '<p class="note">and ' + (list.length - max) + " more</p>" : "");
  }
  function eventLink(q) {
    if (q === undefined) return '<span class="note">—</span>';
    if (q < 0) return '<span class="note">(not in this DAG)</span>';
    return '<a data-k="' + q + '" title="' + esc(E[q].id) + '"><span class="id">' + esc(short(E[q].id)) + "</span></a> " +
      '<span class="note">' + esc(E[q].sender) + "</span>";
  }
  // A state as a table: type, state key, event.
  function stateTable(id, m, mark) {
    if (!m) return '<p class="note">none</p>';
    var keys = sortedKeys(Array.from(m.keys())), h = [];
    h.push('<table id="' + id + '" data-entries="' + keys.length + '"><thead><tr><th>type</th><th>state_key</th><th>event</th></tr></thead><tbody>');
    keys.slice(0, MAX_ROWS).forEach(function (q) {
      h.push("<tr" + (q === mark ? ' class="mark"' : "") + "><td>" + esc(D.keys[q][0]) + "</td><td><code>" + esc(D.keys[q][1]) +
        "</code></td><td>" + eventLink(m.get(q)) + "</td></tr>");
    });
    h.push("</tbody></table>");
    if (keys.length > MAX_ROWS) h.push('<p class="note">and ' + (keys.length - MAX_ROWS) + " more entries</p>");
    return h.join("");
  }

  // The PDU as received: the columns put back into what the page was given of it.
  function pduJson(q) {
    var p = D.pdus[q], e = E[q], o = {};
    Object.keys(p).forEach(function (x) { o[x] = p[x]; });
    var derived = { type: e.type, sender: e.sender, room_id: D.room_id, depth: e.depth,
      prev_events: e.prev.map(function (x) { return E[x].id; }), auth_events: e.auth.map(function (x) { return E[x].id; }) };
    if (e.sk !== undefined) derived.state_key = e.sk;
    Object.keys(derived).forEach(function (x) { if (!(x in o)) o[x] = derived[x]; });
    var sorted = { event_id: e.id };
    Object.keys(o).sort().forEach(function (x) { sorted[x] = o[x]; });
    return sorted;
  }

  function detail() {
    var box = $("detail");
    if (selected < 0) { box.innerHTML = overview(); return; }
    var e = E[selected], h = [];
    h.push("<h2>" + esc(e.type) + (e.sk !== undefined ? " <code>" + esc(e.sk) + "</code>" : "") + "</h2>");
    h.push('<p><span class="id">' + esc(e.id) + "</span><br>sender <code>" + esc(e.sender) + "</code> · depth " +
      e.depth + " · layer " + e.layer + " · " + esc(VERDICT_NAME[e.v] || e.v) + "</p>");
    var why = refWhy[selected];
    h.push("<p>" + (D.judged ? "dag verify" : "judged from scratch on the union DAG") + ": <b>" + (why ? "rejected" : "accepted") +
      "</b>" + (why ? " at stage <code>" + esc(why[0]) + "</code>: " + esc(why[1]) : "") + "</p>");
    var ds = decisionsOf[selected];
    h.push("<h3>Decisions (" + ds.length + ")</h3>");
    if (ds.length) {
      h.push('<table id="decisions"><thead><tr><th>server</th><th>decision</th><th>stage</th><th>reason</th><th>t</th></tr></thead><tbody>');
      ds.forEach(function (d) {
        var v = verdictOf(d);
        h.push("<tr><td>" + esc(D.servers[DEC.s[d]]) + '</td><td class="' + esc(v) + '">' + esc(v) +
          (backfilled[d] ? ' <span class="note">(backfill)</span>' : "") + "</td><td>" + esc(str(stageOf[d])) + "</td><td>" +
          esc(str(reasonOf[d])) + '</td><td class="num">' + fmtT(DEC.t[d]) + "</td></tr>");
      });
      h.push("</tbody></table>");
    } else {
      h.push('<p class="note">' + (ND ? "No server logged a decision on this event." :
        "No server decisions in this file (a DAG judged by dag verify).") + "</p>");
    }
    var before = stateOf(D.sb[selected]);
    h.push("<h3>State before (" + (before ? before.size : 0) + " entries)</h3>");
    h.push('<p class="note">Resolved from the states after its prev events, as <code>dag verify</code> does' +
      (e.key >= 0 ? "; the highlighted entry is the one this event replaces" : "") + ".</p>");
    h.push(stateTable("state-before", before, e.key));
    h.push("<h3>Prev events (" + e.prev.length + ")</h3>" + links(e.prev));
    h.push("<h3>Auth events (" + e.auth.length + ")</h3>" + links(e.auth));
    h.push("<h3>Children (" + children[selected].length + ")</h3>" + links(children[selected]));
    h.push("<h3>JSON</h3><pre>" + esc(JSON.stringify(pduJson(selected), null, 2)) + "</pre>");
    box.innerHTML = h.join("");
  }

  // What the page shows when nothing is selected: where to look.
  function overview() {
    var h = ['<p class="note">Click an event (or search) to see its JSON, every server\'s decision on it, the state ' +
      "before it and its prev and auth events. Wheel: zoom, drag: pan. Pick a server to see what it held at the chosen " +
      "time, and a second one to diff them.</p>"];
    if (ND) {
      var groups = {}, q;
      for (q = 0; q < N; q++) {
        var by = {};
        decisionsOf[q].forEach(function (d) { if (verdictOf(d) === "soft_failed") by[DEC.s[d]] = true; });
        var names = Object.keys(by).map(Number).sort(function (a, b) { return a - b; }).map(function (s) { return D.servers[s]; });
        if (names.length) (groups[names.join(", ")] || (groups[names.join(", ")] = [])).push(q);
      }
      var g = Object.keys(groups).sort();
      var total = g.reduce(function (a, x) { return a + groups[x].length; }, 0);
      h.push('<h3 id="soft-failed">Soft-failed events (' + total + ")</h3>");
      if (!g.length) h.push('<p class="note">none</p>');
      g.forEach(function (x) { h.push("<p>by <b>" + esc(x) + "</b> (" + groups[x].length + "):</p>" + links(groups[x], 20)); });
      var p = presets();
      if (p.length) h.push("<h3>Compare the sides</h3><ul class=\"links\">" + p.join("") + "</ul>");
    }
    var rejected = Object.keys(refWhy).map(Number);
    h.push("<h3>Rejected (" + rejected.length + ")</h3>" + links(rejected, 20));
    return h.join("");
  }
  // Links that diff one server of each side of a partition at its middle and at the end.
  function presets() {
    var out = [], open = {};
    D.faults.forEach(function (f) {
      if (f.start) { open[f.fault] = f; return; }
      var s = open[f.fault], text = s && D.fault_text[String(f.fault)];
      if (!s || s.what !== "partition" || !text) return;
      var sides = text.split("|").map(function (x) { return x.trim().split(",")[0].trim(); })
        .filter(function (x) { return D.servers.indexOf(x) >= 0; });
      var mid = Math.round((s.t_us + f.t_us) / 2e6);
      for (var a = 1; a < sides.length; a++) {
        ["" + mid, "end"].forEach(function (t) {
          var hash = "server=" + sides[0] + "&vs=" + sides[a] + "&t=" + (t === "end" ? tEnd / 1e6 : t);
          out.push('<li><a data-preset="' + esc(hash) + '">' + esc(sides[0]) + " vs " + esc(sides[a]) + " at " +
            (t === "end" ? "the end" : t + " s (mid-partition)") + "</a></li>");
        });
      }
    });
    return out;
  }

  function serverPanel() {
    var box = $("server-view"), q, counts = {}, nHeld = 0, h = [];
    for (q = 0; q < N; q++) if (status[q]) { nHeld++; counts[status[q]] = (counts[status[q]] || 0) + 1; }
    var when = ND ? " at " + fmtT(tNow) : "";
    var parts = Object.keys(counts).sort().map(function (c) { return counts[c] + " " + c; });
    var f = Object.keys(fwd).map(Number).sort(function (a, b) { return a - b; });
    if (diffing()) { box.innerHTML = diffPanel(when); return; }
    h.push("<h2>" + (server >= 0 ? "Server <b>" + esc(D.servers[server]) + "</b>" : "All servers (union)") + when + "</h2>");
    h.push("<p>" + (server >= 0 ? "holds " : "") + nHeld + " of " + N + " events" + (parts.length ? " (" + esc(parts.join(", ")) + ")" : "") + "</p>");
    if (server < 0 && tNow < tEnd) {
      h.push('<p class="note">Pick a server for its forward extremities and current state at this time.</p>');
    } else {
      h.push('<h3 id="fwd-title">Forward extremities (' + f.length + ")</h3>" + links(f));
    }
    if (server >= 0) {
      var cur = currentOf(server), m = stateOf(cur[0]);
      h.push('<details id="current"' + (currentOpen ? " open" : "") + "><summary><b>Current state (" + (m ? m.size : 0) +
        " entries)</b></summary>");
      h.push('<p class="note">The resolution of the states after its forward extremities' +
        (cur[0] >= 0 ? ", as of " + fmtT(cur[1]) : "") + (D.current_stride > 1 ? "; sampled: computed at every " +
        D.current_stride + "th change of its extremities (" + D.current_points + " changes in this room) and its last" : "") + ".</p>");
      h.push(stateTable("current-state", m, -1) + "</details>");
    }
    box.innerHTML = h.join("");
  }

  function diffPanel(when) {
    var a = D.servers[server], b = D.servers[serverB], onlyA = [], onlyB = [], differ = [], parts = [], q, c;
    for (q = 0; q < N; q++) {
      var ha = held(status[q]), hb = held(statusB[q]);
      if (ha && !hb) onlyA.push(q);
      else if (hb && !ha) onlyB.push(q);
      else if (ha && hb && status[q] !== statusB[q]) differ.push(q);
    }
    // Where the two part: events both hold with a child only one holds.
    for (q = 0; q < N; q++) {
      if (!held(status[q]) || !held(statusB[q])) continue;
      for (c = 0; c < children[q].length; c++) {
        var x = children[q][c];
        if (held(status[x]) !== held(statusB[x])) { parts.push(q); break; }
      }
    }
    var ca = currentOf(server), cb = currentOf(serverB), ma = stateOf(ca[0]) || new Map(), mb = stateOf(cb[0]) || new Map();
    var keys = {}, diffs = [];
    ma.forEach(function (v, x) { keys[x] = true; });
    mb.forEach(function (v, x) { keys[x] = true; });
    sortedKeys(Object.keys(keys).map(Number)).forEach(function (x) { if (ma.get(x) !== mb.get(x)) diffs.push(x); });
    var h = [];
    h.push('<h2 id="diff" data-diff-entries="' + diffs.length + '" data-only-a="' + onlyA.length + '" data-only-b="' + onlyB.length +
      '">Diff <b>' + esc(a) + "</b> vs <b>" + esc(b) + "</b>" + when + "</h2>");
    h.push('<p><i class="sw" style="background:' + ONLY_A + '"></i>' + onlyA.length + " held only by " + esc(a) +
      ' · <i class="sw" style="background:' + ONLY_B + '"></i>' + onlyB.length + " only by " + esc(b) +
      ' · <i class="sw ring" style="border-color:' + DIFFERS + '"></i>' + differ.length + " decided differently</p>");
    h.push("<h3>Current states: " + (diffs.length ? diffs.length + " entries differ" : "agree (" + ma.size + " entries)") + "</h3>");
    if (diffs.length) {
      h.push('<table id="state-diff"><thead><tr><th>type</th><th>state_key</th><th>' + esc(a) + "</th><th>" + esc(b) +
        "</th></tr></thead><tbody>");
      diffs.slice(0, MAX_ROWS).forEach(function (x) {
        h.push("<tr><td>" + esc(D.keys[x][0]) + "</td><td><code>" + esc(D.keys[x][1]) + "</code></td><td>" + eventLink(ma.get(x)) +
          "</td><td>" + eventLink(mb.get(x)) + "</td></tr>");
      });
      h.push("</tbody></table>");
    }
    h.push("<h3>Where they part (" + parts.length + ")</h3>" + (parts.length ? '<p><a data-zoom="' + parts[0] +
      '">zoom to the first</a></p>' : "") + links(parts, 20));
    h.push("<h3>Decided differently (" + differ.length + ")</h3>" + links(differ, 20));
    h.push("<h3>Only " + esc(a) + " holds (" + onlyA.length + ")</h3>" + links(onlyA, 20));
    h.push("<h3>Only " + esc(b) + " holds (" + onlyB.length + ")</h3>" + links(onlyB, 20));
    return h.join("");
  }

  // Centres event q at a zoom where events are drawn with a radius of about 6 px.
  function zoomTo(q) {
    if (q < 0 || q >= N) return;
    view.s = Math.max(view.s, 6 / R);
    view.ox = W / 2 - view.s * X[q]; view.oy = H / 3 - view.s * Y[q];
    redraw();
  }
  function zoomToParting() {
    var z = document.querySelector("#server-view a[data-zoom]");
    if (z) zoomTo(Number(z.getAttribute("data-zoom")));
  }

  function select(q, centre) {
    selected = q;
    if (q >= 0 && centre) {
      var x = sx(q), y = sy(q);
      if (x < 0 || x > W || y < 0 || y > H) { view.ox += W / 2 - x; view.oy += H / 2 - y; }
    }
    detail();
    if (q >= 0 && history.replaceState) history.replaceState(null, "", "#event=" + encodeURIComponent(E[q].id));
    draw();
  }

  function search(text) {
    text = text.trim().toLowerCase();
    if (!text) { matches = null; $("search-result").textContent = ""; draw(); return -1; }
    matches = {};
    var n = 0, first = -1;
    for (var q = 0; q < N; q++) {
      var e = E[q];
      if (e.id.toLowerCase().indexOf(text) >= 0 || e.sender.toLowerCase().indexOf(text) >= 0 || e.type.toLowerCase().indexOf(text) >= 0) {
        matches[q] = true; n++; if (first < 0) first = q;
      }
    }
    $("search-result").textContent = n + " match" + (n === 1 ? "" : "es") + (n ? " (Enter: first)" : "");
    draw();
    return first;
  }

  // The time axis: faults (start to end; overlapping ones on separate lanes), the servers'
  // divergence episodes and the time they agreed, and client actions (the scenario's timeline
  // as labelled marks, others as ticks).
  function timeAxis() {
    var box = $("faults"), open = {}, bands = [], h = [];
    if (!tEnd) return;
    D.faults.forEach(function (f) {
      if (f.start) open[f.fault] = f;
      else {
        var s = open[f.fault];
        bands.push({ a: s ? s.t_us : 0, b: f.t_us, what: (s ? s.what : "") + (s ? " → " : "") + f.what, n: f.fault });
        delete open[f.fault];
      }
    });
    Object.keys(open).forEach(function (n) { bands.push({ a: open[n].t_us, b: tEnd, what: open[n].what, n: Number(n) }); });
    bands.sort(function (x, y) { return x.a - y.a || x.n - y.n; });
    var lanes = [];
    bands.forEach(function (b) {
      var lane = 0;
      while (lanes[lane] !== undefined && lanes[lane] > b.a) lane++;
      lanes[lane] = b.b; b.lane = lane;
    });
    var pct = function (t) { return 100 * Math.max(0, Math.min(tEnd, t)) / tEnd; };
    var top = 2 + 15 * Math.max(1, lanes.length);
    bands.forEach(function (b) {
      var text = D.fault_text[String(b.n)];
      h.push('<div class="fault" style="top:' + (2 + 15 * b.lane) + "px;left:" + pct(b.a) + "%;width:" + Math.max(0.3, pct(b.b) - pct(b.a)) +
        '%" title="fault ' + b.n + ": " + esc(b.what) + (text ? " (" + esc(text) + ")" : "") + " " + fmtT(b.a) + "–" + fmtT(b.b) + '">' +
        esc(b.what) + "</div>");
    });
    // Divergence and agreement.
    D.episodes.forEach(function (ep) {
      var b = ep[1] === null ? tEnd : ep[1];
      h.push('<div class="episode" style="top:' + top + "px;left:" + pct(ep[0]) + "%;width:" + Math.max(0.2, pct(b) - pct(ep[0])) +
        '%" title="servers\' current states differ ' + fmtT(ep[0]) + "–" + (ep[1] === null ? "the end" : fmtT(ep[1])) + '"></div>');
    });
    if (D.agreed_us !== null && D.agreed_us !== undefined) {
      h.push('<div class="agreed" id="agreed" data-t="' + D.agreed_us + '" style="top:' + (top - 2) + "px;left:" + pct(D.agreed_us) +
        '%" title="every server has held the same current state since ' + fmtT(D.agreed_us) + '">agreed ' + (D.agreed_us / 1e6).toFixed(1) + " s</div>");
    }
    var lanesUsed = D.episodes.length || D.agreed_us !== null ? 1 : 0;
    var actionTop = top + 13 * lanesUsed;
    // Scripted actions are labelled: a label goes on the first lane where it does not overlap
    // the previous one (label widths estimated at 6 px a character); others are ticks.
    var width = Math.max(1, box.getBoundingClientRect().width), ends = [], actionLanes = 1;
    D.actions.forEach(function (a, n) {
      var title = fmtT(a[0]) + " · " + a[1] + " · " + a[3] + " " + a[2] + (a[4] ? " " + a[4] : "") +
        (a[6] ? " — refused: " + a[6] : "") + (a[7] ? " (scenario timeline)" : " (workload)");
      var lane = 0;
      if (a[7]) {
        var x = width * pct(a[0]) / 100;
        while (ends[lane] !== undefined && ends[lane] > x) lane++;
        ends[lane] = x + 14 + 6 * a[2].length;
        actionLanes = Math.max(actionLanes, lane + 1);
      }
      h.push('<div class="' + (a[7] ? "action scripted" : "action") + '" data-action="' + n + '" style="top:' + (actionTop + 15 * lane) +
        "px;left:" + pct(a[0]) + '%" title="' + esc(title) + '">' + (a[7] ? esc(a[2]) : "") + "</div>");
    });
    var height = actionTop + (D.actions.length ? 15 * actionLanes + 1 : 0) + 2;
    box.style.height = height + "px";
    box.innerHTML = h.join("") + '<div class="now" id="now"></div>';
    box.setAttribute("data-faults", String(bands.length));
    box.setAttribute("data-actions", String(D.actions.length));
    box.setAttribute("data-scripted", String(D.actions.filter(function (a) { return a[7]; }).length));
    box.addEventListener("click", function (ev) {
      var mark = ev.target.closest ? ev.target.closest("[data-action]") : null;
      if (mark) {
        var a = D.actions[Number(mark.getAttribute("data-action"))];
        setTime(a[0]);
        if (a[5] >= 0) select(a[5], true);
        return;
      }
      var r = box.getBoundingClientRect();
      setTime(Math.round(tEnd * (ev.clientX - r.left) / r.width));
    });
  }

  function setTime(t) {
    tNow = Math.max(0, Math.min(tEnd, t));
    $("slider").value = String(tEnd ? Math.round(1000 * tNow / tEnd) : 1000);
    $("time-label").textContent = fmtT(tNow) + " of " + fmtT(tEnd);
    var now = $("now");
    if (now) now.style.left = (tEnd ? 100 * tNow / tEnd : 100) + "%";
    recompute(); draw();
  }

  function legend() {
    var used = {}, h;
    E.forEach(function (e) { used[e.v] = true; });
    h = Object.keys(VERDICT_COLOUR).filter(function (v) { return used[v]; }).map(function (v) {
      return '<i style="background:' + VERDICT_COLOUR[v] + '"></i>' + esc(VERDICT_NAME[v]);
    });
    h.push('<i style="background:' + NOT_HELD + ';border:1px solid #bbb"></i>not held yet');
    h.push('<i style="background:#fff;border:2px solid #111"></i>forward extremity');
    if (diffing()) {
      h.push('<i style="background:' + ONLY_A + '"></i>only ' + esc(D.servers[server]));
      h.push('<i style="background:' + ONLY_B + '"></i>only ' + esc(D.servers[serverB]));
      h.push('<i style="background:#fff;border:2px solid ' + DIFFERS + '"></i>decided differently');
    }
    if (view.s * GX < 2) h.push('<span class="note">edges hidden at this zoom</span>');
    $("legend").innerHTML = h.join("");
  }
  function redraw() { draw(); legend(); }

  function setServers(a, b) {
    server = a; serverB = b;
    $("server").value = a >= 0 ? String(a) : "";
    $("server-b").value = b >= 0 ? String(b) : "";
    recompute(); redraw();
  }
  function applyHash(hash) {
    var sm = /(?:^#?|&)server=([^&]*)/.exec(hash), vm = /(?:^#?|&)vs=([^&]*)/.exec(hash), tm = /(?:^#?|&)t=([0-9.]+)/.exec(hash);
    var a = sm ? D.servers.indexOf(decodeURIComponent(sm[1])) : server, b = vm ? D.servers.indexOf(decodeURIComponent(vm[1])) : serverB;
    server = a; serverB = b;
    $("server").value = a >= 0 ? String(a) : "";
    $("server-b").value = b >= 0 ? String(b) : "";
    setTime(tm ? Math.round(Number(tm[1]) * 1e6) : tNow);
    legend();
  }

  // Wiring.
  D.servers.forEach(function (s, n) {
    ["server", "server-b"].forEach(function (id) {
      var o = document.createElement("option"); o.value = String(n); o.textContent = s; $(id).appendChild(o);
    });
  });
  if (!ND) {
    $("time").style.display = "none"; $("server").parentNode.style.display = "none"; $("server-b").parentNode.style.display = "none";
  }
  $("server").addEventListener("change", function () { setServers(this.value === "" ? -1 : Number(this.value), serverB); });
  $("server-b").addEventListener("change", function () { setServers(server, this.value === "" ? -1 : Number(this.value)); });
  $("colour").addEventListener("change", function () { colourBy = this.value; draw(); });
  $("slider").addEventListener("input", function () { setTime(Math.round(tEnd * Number(this.value) / 1000)); });
  $("fit").addEventListener("click", function () { fit(); redraw(); });
  $("search").addEventListener("input", function () { search(this.value); });
  $("search").addEventListener("keydown", function (ev) {
    if (ev.key === "Enter") { var q = search(this.value); if (q >= 0) select(q, true); }
  });
  document.addEventListener("click", function (ev) {
    var a = ev.target.closest ? ev.target.closest("a[data-k]") : null;
    if (a) { ev.preventDefault(); select(Number(a.getAttribute("data-k")), true); return; }
    var p = ev.target.closest ? ev.target.closest("a[data-preset]") : null;
    if (p) { ev.preventDefault(); applyHash(p.getAttribute("data-preset")); zoomToParting(); return; }
    var z = ev.target.closest ? ev.target.closest("a[data-zoom]") : null;
    if (z) { ev.preventDefault(); zoomTo(Number(z.getAttribute("data-zoom"))); }
  });
  canvas.addEventListener("wheel", function (ev) {
    ev.preventDefault();
    var r = canvas.getBoundingClientRect(), px = ev.clientX - r.left, py = ev.clientY - r.top;
    var f = Math.exp(-ev.deltaY * 0.0015);
    view.ox = px - (px - view.ox) * f; view.oy = py - (py - view.oy) * f; view.s *= f;
    redraw();
  }, { passive: false });
  var drag = null;
  canvas.addEventListener("mousedown", function (ev) { drag = { x: ev.clientX, y: ev.clientY, moved: false }; });
  window.addEventListener("mousemove", function (ev) {
    if (!drag) return;
    var dx = ev.clientX - drag.x, dy = ev.clientY - drag.y;
    if (Math.abs(dx) + Math.abs(dy) > 2) drag.moved = true;
    if (drag.moved) { view.ox += dx; view.oy += dy; drag.x = ev.clientX; drag.y = ev.clientY; draw(); }
  });
  window.addEventListener("mouseup", function (ev) {
    if (drag && !drag.moved && ev.target === canvas) {
      var r = canvas.getBoundingClientRect();
      var q = hit(ev.clientX - r.left, ev.clientY - r.top);
      if (q >= 0) select(q, false);
    }
    drag = null;
  });
  window.addEventListener("resize", function () { resize(); redraw(); });
  function fromHash() {
    var m = /(?:^#|&)event=([^&]*)/.exec(location.hash);
    if (m) { var q = byId[decodeURIComponent(m[1])]; if (q !== undefined) select(q, true); }
  }
  window.addEventListener("hashchange", fromHash);
  // The current-state table stays open or closed across redraws of the panel.
  document.addEventListener("toggle", function (ev) { if (ev.target.id === "current") currentOpen = ev.target.open; }, true);

  resize(); fit(); timeAxis();
  applyHash(location.hash.replace(/^#/, ""));
  if (/(?:^#|&)zoom(?:&|$)/.test(location.hash)) zoomToParting();
  detail();
  fromHash();
  document.body.setAttribute("data-events", String(N));
  document.body.setAttribute("data-ready", "1");
  document.body.setAttribute("data-open-ms", String(Math.round(performance.now())));
  // `#bench`: times a slider move for one server, then in diff mode (BENCHMARKS.md).
  if (/(?:^#|&)bench(?:&|$)/.test(location.hash) && S > 1) {
    var t1 = performance.now();
    setServers(0, -1); setTime(tEnd / 2);
    var t2 = performance.now();
    setServers(0, 1); setTime(tEnd / 3);
    var t3 = performance.now();
    document.body.setAttribute("data-bench-ms", Math.round(t2 - t1) + "," + Math.round(t3 - t2));
  }
})();

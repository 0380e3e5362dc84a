// Billing ledger dashboard: a hand-written script, no build step, no framework,
// embedded in billingd (services/dashboard). It reads every figure from the
// Connect JSON API with the signed-in bearer token, so the API's authorization
// (services/api/authz.go) decides what the page may show: a panel whose call
// is denied (403) is hidden, not reported as an error.
//
// Amounts are exact decimal strings in the API's answers and are displayed as
// received: the page never turns an amount into a JavaScript number for
// display, and never adds amounts up (totals come from the API too).
(function () {
  'use strict';

  var TOKEN_KEY = 'billing.dashboard.token';
  var SVG_NS = 'http://www.w3.org/2000/svg';

  // state of the page; seq numbers the loads so that an answer to a stale
  // month or token is dropped.
  var state = {
    token: '',
    role: '',      // admin, auditor, payer, source, none (no billing figure); '' while unknown
    operator: '',  // admin or auditor, from the sign-in probe
    clock: '',
    month: '',
    seq: 0,
    drillSeq: 0,
    data: null     // the month's answers: {month, cost, proforma, billable}
  };

  function $(id) { return document.getElementById(id); }

  // el builds an element: attrs are attributes (class, data-*, title, …) or,
  // for "text", the text content; children are nodes or strings.
  function el(tag, attrs, children) {
    var e = document.createElement(tag);
    setAttrs(e, attrs);
    append(e, children);
    return e;
  }

  function svg(tag, attrs, children) {
    var e = document.createElementNS(SVG_NS, tag);
    setAttrs(e, attrs);
    append(e, children);
    return e;
  }

  function setAttrs(e, attrs) {
    if (!attrs) { return; }
    Object.keys(attrs).forEach(function (k) {
      var v = attrs[k];
      if (v === undefined || v === null || v === false) { return; }
      if (k === 'text') { e.textContent = String(v); } else { e.setAttribute(k, v === true ? '' : String(v)); }
    });
  }

  function append(e, children) {
    if (children === undefined || children === null) { return; }
    if (!Array.isArray(children)) { children = [children]; }
    children.forEach(function (c) {
      if (c === undefined || c === null || c === false) { return; }
      e.appendChild(typeof c === 'string' ? document.createTextNode(c) : c);
    });
  }

  function clear(node) {
    while (node.firstChild) { node.removeChild(node.firstChild); }
  }

  // ---- API -----------------------------------------------------------------

  // call POSTs a Connect JSON request and returns {ok, status, data} or
  // {ok: false, status, code, message}; it never throws.
  async function call(service, method, body) {
    var res;
    try {
      res = await fetch('/billing.v1.' + service + '/' + method, {
        method: 'POST',
        headers: {
          'Content-Type': 'application/json',
          'Connect-Protocol-Version': '1',
          'Authorization': 'Bearer ' + state.token
        },
        body: JSON.stringify(body || {}),
        cache: 'no-store',
        credentials: 'omit'
      });
    } catch (e) {
      return { ok: false, status: 0, code: 'unavailable', message: 'the server did not answer' };
    }
    var payload = null;
    try { payload = await res.json(); } catch (e) { payload = null; }
    if (res.ok) { return { ok: true, status: res.status, data: payload || {} }; }
    return {
      ok: false,
      status: res.status,
      code: (payload && payload.code) || String(res.status),
      message: (payload && payload.message) || res.statusText || ('HTTP ' + res.status)
    };
  }

  // probe GETs a path with the token and returns the HTTP status (0 when the
  // server did not answer), discarding the body.
  async function probe(path) {
    try {
      var res = await fetch(path, { headers: { 'Authorization': 'Bearer ' + state.token }, cache: 'no-store', credentials: 'omit' });
      if (res.body) { res.body.cancel().catch(function () {}); }
      return res.status;
    } catch (e) {
      return 0;
    }
  }

  function query(method, body) { return call('QueryService', method, body); }

  // ---- months ----------------------------------------------------------------

  function validMonth(m) { return typeof m === 'string' && /^\d{4}-(0[1-9]|1[0-2])$/.test(m) ? m : ''; }

  function shiftMonth(m, by) {
    var y = parseInt(m.slice(0, 4), 10);
    var mo = parseInt(m.slice(5, 7), 10) - 1 + by;
    y += Math.floor(mo / 12);
    mo = ((mo % 12) + 12) % 12;
    return String(y).padStart(4, '0') + '-' + String(mo + 1).padStart(2, '0');
  }

  function monthOfClock(now) {
    var m = validMonth(String(now || '').slice(0, 7));
    if (m) { return m; }
    var d = new Date();
    return d.getUTCFullYear() + '-' + String(d.getUTCMonth() + 1).padStart(2, '0');
  }

  function setHash(month) {
    if (window.history && window.history.replaceState) {
      window.history.replaceState(null, '', window.location.pathname + window.location.search + '#month=' + month);
    }
  }

  // ---- session ---------------------------------------------------------------

  function storedToken() {
    try { return window.sessionStorage.getItem(TOKEN_KEY) || ''; } catch (e) { return ''; }
  }

  function storeToken(t) {
    try {
      if (t) { window.sessionStorage.setItem(TOKEN_KEY, t); } else { window.sessionStorage.removeItem(TOKEN_KEY); }
    } catch (e) { /* storage disabled: the token lives as long as the page */ }
  }

  function resetPanels() {
    state.data = null;
    ['panel-cost', 'panel-drill', 'panel-proforma', 'panel-invoices', 'panel-payments', 'panel-tax'].forEach(function (id) {
      var p = $(id);
      p.hidden = true;
      var err = p.querySelector('.panel-error');
      if (err) { err.remove(); }
    });
    ['cost-chart', 'cost-table', 'drill-body', 'proforma-chart', 'proforma-table', 'invoices-table', 'payments-body', 'tax-table'].forEach(function (id) {
      clear($(id));
    });
    $('notice').hidden = true;
  }

  function signOut(message) {
    state.seq++;
    state.token = '';
    state.role = '';
    state.operator = '';
    storeToken('');
    resetPanels();
    $('dashboard').hidden = true;
    $('session').hidden = true;
    $('signin').hidden = false;
    var err = $('signin-error');
    err.textContent = message || '';
    err.hidden = !message;
    document.body.dataset.state = 'signed-out';
    delete document.body.dataset.role;
    delete document.body.dataset.month;
    $('token').focus();
  }

  async function signIn(token, wantMonth) {
    state.seq++;
    var seq = state.seq;
    state.token = token;
    state.role = '';
    state.operator = '';
    resetPanels();
    document.body.dataset.state = 'signing-in';
    var info = await call('AdminService', 'GetServerInfo', {});
    if (seq !== state.seq) { return; }
    if (!info.ok) {
      if (info.status === 401) {
        signOut('The server does not accept this token (unknown, mistyped or revoked).');
      } else if (info.status === 403) {
        signOut('This token may not use the dashboard.');
      } else {
        signOut('Cannot reach the API: ' + info.message);
      }
      return;
    }
    storeToken(token);
    state.clock = info.data.now || '';
    // The role is not part of the API: it is derived from what the token may
    // read. GET /metrics is for operators (admin, auditor) and ListTokens for
    // admins; payers and sources are told apart by the month's reports.
    if (await probe('/metrics') === 200) {
      state.operator = (await call('AdminService', 'ListTokens', {})).ok ? 'admin' : 'auditor';
    }
    if (seq !== state.seq) { return; }
    $('signin').hidden = true;
    $('signin-error').hidden = true;
    $('session').hidden = false;
    $('dashboard').hidden = false;
    $('clock').textContent = state.clock ? 'ledger clock ' + state.clock.replace('T', ' ').replace('Z', ' UTC') : '';
    await loadMonth(validMonth(wantMonth) || monthOfClock(state.clock));
  }

  function showRole() {
    var label = { none: 'no billing access', '': 'unknown role' }[state.role] || state.role;
    if (state.role === 'payer' && state.account) { label += ' · ' + state.account; }
    if (state.role === 'auditor') { label += ' · read only'; }
    $('role').textContent = label;
    $('role').className = 'badge role role-' + (state.role || 'unknown');
    if (state.role) { document.body.dataset.role = state.role; } else { delete document.body.dataset.role; }
  }

  // ---- month ---------------------------------------------------------------

  async function loadMonth(month) {
    state.seq++;
    var seq = state.seq;
    state.month = month;
    $('month').value = month;
    setHash(month);
    document.body.dataset.state = 'loading';
    document.body.dataset.month = month;
    var q = { month: month };
    var answers = await Promise.all([
      query('ReportCost', q),
      query('ReportProforma', q),
      query('ReportBillable', q),
      query('ReportInvoices', q),
      query('ReportPayments', q),
      query('ReportTax', q)
    ]);
    if (seq !== state.seq) { return; }
    if (answers.some(function (a) { return a.status === 401; })) {
      signOut('The server no longer accepts this token (revoked?). Sign in again.');
      return;
    }
    var cost = answers[0], proforma = answers[1], billable = answers[2];
    resetPanels();
    state.data = { month: month, cost: cost, proforma: proforma, billable: billable };
    resolveRole(cost, proforma);
    showRole();

    panel('panel-cost', cost, function (d) { renderCost(d); });
    // A payer's pro forma is in the cost panel and its drill-down; the
    // pro forma panel is for tokens that may read the pro forma only.
    if (!cost.ok && cost.status === 403) {
      panel('panel-proforma', proforma, function (d) { renderProforma(d); });
    }
    panel('panel-invoices', answers[3], function (d) { renderInvoices(d); });
    panel('panel-payments', answers[4], function (d) { renderPayments(d); });
    panel('panel-tax', answers[5], function (d) { renderTax(d); });

    var visible = ['panel-cost', 'panel-proforma', 'panel-invoices', 'panel-payments', 'panel-tax'].some(function (id) { return !$(id).hidden; });
    if (!visible) {
      notice('This token may not read any billing figure (an ingest token publishes usage only).');
    }
    document.body.dataset.state = 'ready';
  }

  function resolveRole(cost, proforma) {
    state.account = '';
    if (state.operator) {
      state.role = state.operator;
      return;
    }
    if (cost.ok) {
      state.role = 'payer';
      var owners = unique((cost.data.rows || []).map(function (r) { return r.ownerAccountId || ''; }));
      if (owners.length === 1) { state.account = owners[0]; }
    } else if (cost.status === 403 && proforma.ok) {
      state.role = 'source';
    } else if (cost.status === 403 && proforma.status === 403) {
      state.role = 'none';
    }
  }

  function notice(text) {
    var n = $('notice');
    n.textContent = text;
    n.hidden = false;
  }

  // panel shows a panel with the answer, hides it when the API denied the
  // call (403: this token may not see these figures), or shows the error
  // inside the panel for any other failure.
  function panel(id, answer, render) {
    var p = $(id);
    if (answer.ok) {
      p.hidden = false;
      render(answer.data);
      return;
    }
    if (answer.status === 403) {
      p.hidden = true;
      return;
    }
    p.hidden = false;
    p.appendChild(el('p', { 'class': 'error panel-error', text: 'Could not load: ' + answer.message }));
  }

  // ---- helpers ---------------------------------------------------------------

  function unique(list) {
    var seen = {};
    var out = [];
    list.forEach(function (v) {
      if (!Object.prototype.hasOwnProperty.call(seen, v)) { seen[v] = true; out.push(v); }
    });
    return out;
  }

  // amount is a table cell holding an exact decimal string as received.
  function amount(value, key, extra) {
    var v = value === undefined || value === null || value === '' ? '' : String(value);
    var cls = 'num' + (v.charAt(0) === '-' ? ' neg' : '') + (extra && v !== '' ? ' ' + extra : '');
    return el('td', { 'class': cls, 'data-k': key, text: v === '' ? '—' : v });
  }

  function cell(text, attrs) {
    var a = attrs || {};
    a.text = text === undefined || text === null || text === '' ? '—' : text;
    return el('td', a);
  }

  function table(head, rows, foot, attrs) {
    var t = el('table', attrs || {});
    t.appendChild(el('thead', null, el('tr', null, head.map(function (h) {
      return typeof h === 'string' ? el('th', { text: h }) : el('th', { 'class': h.cls, text: h.text });
    }))));
    t.appendChild(el('tbody', null, rows));
    if (foot && foot.length) { t.appendChild(el('tfoot', null, foot)); }
    return t;
  }

  function num(text) { return { cls: 'num', text: text }; }

  function blank() { return el('td'); }

  function groupLabel(group) { return group || '(no billing group)'; }

  // statusBadge shows an invoice status (OPEN, PARTIALLY_PAID, PAID, and for
  // a credit note CREDIT or CREDIT_APPLIED) as a badge: "CREDIT APPLIED".
  function statusBadge(status) {
    return el('span', { 'class': 'badge status-' + String(status || '').toLowerCase(), text: (status || '—').replace(/_/g, ' ') });
  }

  // bar maps an exact decimal string to a bar length. Geometry only: Number()
  // of the string is fine here (its float error is far below a pixel); the
  // figures written next to the bars are the API's strings.
  function magnitude(s) {
    var n = Number(s);
    return isFinite(n) && n > 0 ? n : 0;
  }

  // accountsOf returns the accounts of a payer's billing group in the month's
  // pro forma answer (group '' = usage no group of the payer prices).
  function accountsOf(owner, group) {
    var d = state.data;
    if (!d || !d.proforma.ok) { return []; }
    return unique((d.proforma.data.rows || []).filter(function (r) {
      return (r.ownerAccountId || '') === owner && (r.billingGroupId || '') === group;
    }).map(function (r) { return r.accountId || ''; }));
  }

  // sourcesOf returns the source organizations whose billable rows (billed to
  // owner) belong to the group's accounts.
  function sourcesOf(owner, group) {
    var d = state.data;
    if (!d || !d.billable.ok) { return []; }
    var accounts = accountsOf(owner, group);
    return unique((d.billable.data.rows || []).filter(function (r) {
      return (r.payerAccountId || '') === owner && accounts.indexOf(r.accountId || '') >= 0;
    }).map(function (r) { return r.sourceAccountId || ''; })).sort();
  }

  function currencyNote() {
    var d = state.data;
    if (!d || !d.billable.ok) { return ''; }
    var cur = unique((d.billable.data.rows || []).map(function (r) { return r.currency || ''; }));
    return cur.length === 1 && cur[0] ? cur[0] : '';
  }

  // ---- cost: billable vs pro forma -----------------------------------------

  function renderCost(d) {
    var rows = d.rows || [];
    var owners = unique(rows.map(function (r) { return r.ownerAccountId || ''; }));
    var many = owners.length > 1;
    var cur = currencyNote();
    if (!rows.length) {
      $('cost-table').appendChild(el('p', { 'class': 'muted', text: 'No billable or pro forma cost in ' + state.month + '.' }));
      return;
    }
    var head = (many ? ['Payer'] : []).concat(['Billing group', 'Source organization', num('Billable' + (cur ? ' ' + cur : '')), num('Pro forma'), num('Margin'), num('Margin %')]);
    var body = rows.map(function (r) {
      var owner = r.ownerAccountId || '';
      var group = r.billingGroupId || '';
      var btn = el('button', { type: 'button', 'class': 'link', title: 'Accounts and services of ' + groupLabel(group), text: groupLabel(group) });
      btn.addEventListener('click', function () { drill(owner, group); });
      var tr = el('tr', { 'class': 'cost-row', 'data-owner': owner, 'data-group': group }, (many ? [cell(owner)] : []).concat([
        el('td', null, btn),
        cell(sourcesOf(owner, group).join(', '), { 'class': 'ids wrap' }),
        amount(r.billableCost, 'billable'),
        amount(r.proformaCost, 'proforma'),
        amount(r.margin, 'margin'),
        amount(r.marginPercentage, 'margin-pct', 'pct')
      ]));
      return tr;
    });
    var foot = [el('tr', { 'class': 'cost-total' }, (many ? [blank()] : []).concat([
      el('th', { text: 'Total' }), blank(),
      amount(d.billableTotal, 'billable'),
      amount(d.proformaTotal, 'proforma'),
      amount(d.marginTotal, 'margin'),
      amount(d.marginPercentage, 'margin-pct', 'pct')
    ]))];
    $('cost-table').appendChild(table(head, body, foot, { id: 'cost', 'class': 'data' }));
    $('cost-chart').appendChild(costChart(rows, many));
  }

  // costChart draws, per billing group, a billable bar and a pro forma bar
  // with their figures, and the margin under them.
  function costChart(rows, many) {
    var labelW = 118, barMax = 204, W = 420, barH = 14, gap = 2, rowH = barH * 2 + gap + 26;
    var top = 26;
    var H = top + rows.length * rowH;
    var max = 0;
    rows.forEach(function (r) { max = Math.max(max, magnitude(r.billableCost), magnitude(r.proformaCost)); });
    var scale = max > 0 ? barMax / max : 0;
    var s = svg('svg', { viewBox: '0 0 ' + W + ' ' + H, width: W, height: H, role: 'img', 'aria-label': 'Billable and pro forma cost per billing group', 'class': 'bars' });
    s.appendChild(svg('rect', { x: labelW, y: 4, width: 10, height: 10, 'class': 'bar-billable' }));
    s.appendChild(svg('text', { x: labelW + 14, y: 13, 'class': 'legend', text: 'billable' }));
    s.appendChild(svg('rect', { x: labelW + 90, y: 4, width: 10, height: 10, 'class': 'bar-proforma' }));
    s.appendChild(svg('text', { x: labelW + 104, y: 13, 'class': 'legend', text: 'pro forma' }));
    rows.forEach(function (r, i) {
      var owner = r.ownerAccountId || '';
      var group = r.billingGroupId || '';
      var y = top + i * rowH;
      var g = svg('g', { 'class': 'bar-group', 'data-owner': owner, 'data-group': group, tabindex: 0 });
      g.appendChild(svg('title', { text: groupLabel(group) + ': click for accounts and services' }));
      g.appendChild(svg('text', { x: labelW - 8, y: y + barH + 2, 'class': 'label', 'text-anchor': 'end', text: group || '(no group)' }));
      if (many) { g.appendChild(svg('text', { x: labelW - 8, y: y + 2 * barH + 8, 'class': 'label sub', 'text-anchor': 'end', text: owner })); }
      var bw = magnitude(r.billableCost) * scale;
      var pw = magnitude(r.proformaCost) * scale;
      g.appendChild(svg('rect', { x: labelW, y: y, width: bw.toFixed(1), height: barH, 'class': 'bar-billable' }));
      g.appendChild(svg('text', { x: labelW + bw + 4, y: y + barH - 3, 'class': 'value', text: r.billableCost || '0' }));
      g.appendChild(svg('rect', { x: labelW, y: y + barH + gap, width: pw.toFixed(1), height: barH, 'class': 'bar-proforma' }));
      g.appendChild(svg('text', { x: labelW + pw + 4, y: y + 2 * barH + gap - 3, 'class': 'value', text: r.proformaCost || '0' }));
      var m = r.margin || '0';
      g.appendChild(svg('text', {
        x: labelW, y: y + 2 * barH + gap + 13, 'class': 'margin' + (m.charAt(0) === '-' ? ' neg' : ''),
        text: 'margin ' + m + (r.marginPercentage ? ' (' + r.marginPercentage + ' %)' : '')
      }));
      g.addEventListener('click', function () { drill(owner, group); });
      g.addEventListener('keydown', function (e) { if (e.key === 'Enter' || e.key === ' ') { e.preventDefault(); drill(owner, group); } });
      s.appendChild(g);
    });
    return s;
  }

  // ---- drill-down: a billing group's accounts and services ------------------

  async function drill(owner, group) {
    var seq = state.seq;
    var mine = ++state.drillSeq;
    // stale reports whether the month, the token or the group changed meanwhile.
    var stale = function () { return seq !== state.seq || mine !== state.drillSeq; };
    var month = state.month;
    var p = $('panel-drill');
    var body = $('drill-body');
    clear(body);
    p.hidden = false;
    p.dataset.state = 'loading';
    p.dataset.group = group;
    p.dataset.owner = owner;
    $('drill-title').textContent = groupLabel(group) + ' · accounts and services, ' + month;
    body.appendChild(el('p', { 'class': 'muted', text: 'Loading…' }));
    p.scrollIntoView({ block: 'nearest' });

    var pfRows;
    if (group) {
      var pf = await query('ReportProforma', { month: month, payerAccountId: owner, billingGroupId: group });
      if (stale()) { return; }
      if (!pf.ok) {
        clear(body);
        body.appendChild(el('p', { 'class': pf.status === 403 ? 'muted' : 'error', text: pf.status === 403 ? 'This token may not read the pro forma of this group.' : 'Could not load: ' + pf.message }));
        p.dataset.state = 'ready';
        return;
      }
      pfRows = pf.data.rows || [];
    } else {
      // The API's billing_group_id filter has no value for "no group": the
      // month's pro forma answer is filtered here instead.
      pfRows = (state.data && state.data.proforma.ok ? state.data.proforma.data.rows || [] : []).filter(function (r) {
        return (r.ownerAccountId || '') === owner && !r.billingGroupId;
      });
    }
    var accounts = unique(pfRows.map(function (r) { return r.accountId || ''; }));
    var billRows = [];
    var sources = sourcesOf(owner, group);
    for (var i = 0; i < sources.length; i++) {
      var b = await query('ReportBillable', { month: month, payerAccountId: owner, sourceAccountId: sources[i] });
      if (stale()) { return; }
      if (b.ok) {
        billRows = billRows.concat((b.data.rows || []).filter(function (r) { return accounts.indexOf(r.accountId || '') >= 0; }));
      }
    }

    var key = function (a, s) { return a + '\u0000' + s; };
    var billed = {};
    billRows.forEach(function (r) { billed[key(r.accountId, r.service)] = r; });
    var usage = pfRows.filter(function (r) { return !r.customLineItemId; });
    var fees = pfRows.filter(function (r) { return !!r.customLineItemId; });
    var seen = {};
    var rows = usage.map(function (r) {
      var k = key(r.accountId, r.service);
      seen[k] = true;
      var bl = billed[k];
      return el('tr', { 'class': 'drill-row', 'data-account': r.accountId || '', 'data-service': r.service || '' }, [
        cell(r.accountId), cell(r.service),
        amount(bl ? bl.billedCost : '', 'billable'),
        amount(r.listCost, 'list'),
        amount(r.proformaCost, 'proforma'),
        cell(r.recordCount || '0', { 'class': 'num muted' })
      ]);
    });
    // Billed usage of the group's accounts that has no pro forma row yet.
    billRows.forEach(function (r) {
      var k = key(r.accountId, r.service);
      if (seen[k]) { return; }
      rows.push(el('tr', { 'class': 'drill-row', 'data-account': r.accountId || '', 'data-service': r.service || '' }, [
        cell(r.accountId), cell(r.service), amount(r.billedCost, 'billable'), amount('', 'list'), amount('', 'proforma'), cell(r.recordCount || '0', { 'class': 'num muted' })
      ]));
    });
    fees.forEach(function (r) {
      rows.push(el('tr', { 'class': 'drill-row fee', 'data-account': r.accountId || '', 'data-service': r.service || '', 'data-item': r.customLineItemId }, [
        cell(r.accountId), el('td', null, [r.service || '', ' ', el('span', { 'class': 'badge fee', title: r.customLineItemId, text: 'custom line item' })]),
        amount('', 'billable'), amount('', 'list'), amount(r.proformaCost, 'proforma'), cell('', { 'class': 'num muted' })
      ]));
    });
    var foot = [];
    var costRow = state.data && state.data.cost.ok ? (state.data.cost.data.rows || []).filter(function (r) {
      return (r.ownerAccountId || '') === owner && (r.billingGroupId || '') === group;
    })[0] : null;
    if (costRow) {
      foot.push(el('tr', null, [el('th', { text: 'Group total' }), el('td', { 'class': 'muted', text: 'margin ' + (costRow.margin || '0') }),
        amount(costRow.billableCost, 'billable'), blank(), amount(costRow.proformaCost, 'proforma'), blank()]));
    }
    clear(body);
    if (!rows.length) {
      body.appendChild(el('p', { 'class': 'muted', text: 'No usage or custom line item in this group in ' + month + '.' }));
    } else {
      body.appendChild(table(['Account', 'Service', num('Billable'), num('List cost'), num('Pro forma'), num('Records')], rows, foot, { id: 'drill', 'class': 'data' }));
    }
    p.dataset.state = 'ready';
  }

  // ---- pro forma only (a source's view) --------------------------------------

  function renderProforma(d) {
    var rows = d.rows || [];
    if (!rows.length) {
      $('proforma-table').appendChild(el('p', { 'class': 'muted', text: 'No pro forma cost in ' + state.month + '.' }));
      return;
    }
    var accounts = unique(rows.map(function (r) { return r.accountId || ''; }));
    // List cost is left out on purpose: this panel is the organization's
    // showback, and nothing on it should read like what its payer is billed.
    var body = rows.map(function (r) {
      var svc = r.customLineItemId ? el('td', null, [r.service || '', ' ', el('span', { 'class': 'badge fee', title: r.customLineItemId, text: 'custom line item' })]) : cell(r.service);
      return el('tr', { 'class': 'proforma-row', 'data-account': r.accountId || '', 'data-service': r.service || '', 'data-item': r.customLineItemId || '' }, [
        cell(r.accountId), svc, cell(groupLabel(r.billingGroupId), { 'class': 'ids' }), amount(r.proformaCost, 'proforma')
      ]);
    });
    var foot = [el('tr', { 'class': 'proforma-total' }, [el('th', { text: 'Total' }), blank(), blank(), amount(d.total, 'proforma')])];
    $('proforma-table').appendChild(table(['Account', 'Service', 'Billing group', num('Pro forma')], body, foot, { id: 'proforma', 'class': 'data' }));
    $('proforma-chart').appendChild(proformaChart(rows));
    $('panel-proforma').querySelector('p.muted').textContent =
      'Accounts ' + accounts.join(', ') + ': usage at the prices of the organization that pays for you, with its custom line items.';
  }

  function proformaChart(rows) {
    var top = rows.slice().sort(function (a, b) { return magnitude(b.proformaCost) - magnitude(a.proformaCost); }).slice(0, 12);
    var labelW = 232, barMax = 120, W = 430, barH = 16, rowH = 24;
    var H = top.length * rowH + 6;
    var max = 0;
    top.forEach(function (r) { max = Math.max(max, magnitude(r.proformaCost)); });
    var scale = max > 0 ? barMax / max : 0;
    var s = svg('svg', { viewBox: '0 0 ' + W + ' ' + H, width: W, height: H, role: 'img', 'aria-label': 'Pro forma cost per account and service', 'class': 'bars' });
    top.forEach(function (r, i) {
      var y = 4 + i * rowH;
      var w = magnitude(r.proformaCost) * scale;
      s.appendChild(svg('text', { x: labelW - 8, y: y + barH - 4, 'class': 'label', 'text-anchor': 'end', text: (r.accountId || '') + ' · ' + (r.service || '') }));
      s.appendChild(svg('rect', { x: labelW, y: y, width: w.toFixed(1), height: barH, 'class': 'bar-proforma' }));
      s.appendChild(svg('text', { x: labelW + w + 4, y: y + barH - 4, 'class': 'value', text: r.proformaCost || '0' }));
    });
    return s;
  }

  // ---- invoices, payments, tax ---------------------------------------------

  // renderInvoices lists the month's invoices. The invoice id of each row is
  // a disclosure button: it shows, in a row under the invoice, the invoice's
  // lines, taxes and totals, all from the same ReportInvoices answer (no
  // further call, so the detail can never disagree with the row).
  function renderInvoices(d) {
    var rows = d.rows || [];
    if (!rows.length) {
      $('invoices-table').appendChild(el('p', { 'class': 'muted', text: 'No invoice issued for ' + state.month + ' (the month is not closed).' }));
      return;
    }
    var cols = 11;
    var body = [];
    rows.forEach(function (r, i) {
      var unit = r.invoiceUnitName ? r.invoiceUnitName + ' (' + r.invoiceUnitId + ')' : '';
      var detailId = 'invoice-detail-' + i;
      var toggle = el('button', {
        type: 'button', 'class': 'link toggle', 'aria-expanded': 'false', 'aria-controls': detailId,
        title: 'Lines, tax and totals of this invoice'
      }, [el('span', { 'class': 'chevron', 'aria-hidden': 'true' }), r.invoiceId || '—']);
      var detail = el('tr', { 'class': 'invoice-detail', id: detailId, 'data-invoice': r.invoiceId || '', hidden: true });
      toggle.addEventListener('click', function () {
        var open = toggle.getAttribute('aria-expanded') !== 'true';
        if (open && !detail.firstChild) {
          detail.appendChild(el('td', { colspan: cols }, invoiceDetail(r)));
        }
        toggle.setAttribute('aria-expanded', open ? 'true' : 'false');
        detail.hidden = !open;
      });
      body.push(el('tr', { 'class': 'invoice-row', 'data-invoice': r.invoiceId || '' }, [
        el('td', { 'class': 'ids' }, toggle),
        cell(r.sourceAccountId + (unit ? ' · ' + unit : ''), { 'class': 'ids wrap' }),
        cell(r.seller, { 'class': 'wrap' }),
        cell(r.invoiceDate),
        cell(r.currency),
        amount(r.subtotal, 'subtotal'),
        amount(r.tax, 'tax'),
        amount(r.total, 'total'),
        amount(r.paid, 'paid'),
        amount(r.outstanding, 'outstanding'),
        el('td', { 'data-k': 'status' }, statusBadge(r.status))
      ]));
      body.push(detail);
    });
    var foot = (d.totals || []).map(function (t) {
      return el('tr', { 'class': 'invoice-total', 'data-currency': t.currency || '' }, [
        el('th', { text: 'Total ' + (t.currency || '') }),
        cell((t.invoices || '0') + ' invoice' + (t.invoices === '1' ? '' : 's'), { 'class': 'muted' }),
        blank(), blank(), cell(t.currency),
        amount(t.subtotal, 'subtotal'), amount(t.tax, 'tax'), amount(t.total, 'total'), amount(t.paid, 'paid'), amount(t.outstanding, 'outstanding'),
        blank()
      ]);
    });
    $('invoices-table').appendChild(table(['Invoice', 'Source organization · unit', 'Seller', 'Date', 'Cur.', num('Subtotal'), num('Tax'), num('Total'), num('Paid'), num('Outstanding'), 'Status'], body, foot, { id: 'invoices', 'class': 'data' }));
  }

  // figure is a span holding an exact decimal string as received, for cells
  // that carry a figure and a note (a currency, a date).
  function figure(value, key) {
    var v = value === undefined || value === null || value === '' ? '' : String(value);
    return el('span', { 'class': v.charAt(0) === '-' ? 'neg' : null, 'data-k': key, text: v === '' ? '—' : v });
  }

  function note(text) { return text ? el('span', { 'class': 'muted note', text: text }) : null; }

  function day(ts) { return String(ts || '').slice(0, 10); }

  function treatment(reason) { return reason ? reason.replace('_', ' ').toLowerCase() : 'taxed'; }

  // invoiceDetail is what an invoice's disclosure shows: to whom it was
  // issued, its lines (usage cost in the usage currency, the exchange rate,
  // the converted figure and the line amount rounded once in the invoice
  // currency), its taxes per jurisdiction and treatment, and its totals.
  function invoiceDetail(r) {
    var cur = r.currency || '';
    var to = [r.billToLegalName, r.billToTaxRegistrationNumber ? 'tax no. ' + r.billToTaxRegistrationNumber : '',
      r.receiverAccountId ? 'receiver ' + r.receiverAccountId : '',
      r.invoiceUnitId ? 'unit ' + (r.invoiceUnitName || '') + ' (' + r.invoiceUnitId + ')' : '',
      r.paymentMethod ? 'payment by ' + r.paymentMethod.replace('_', ' ').toLowerCase() : ''].filter(function (s) { return !!s; });
    var lines = (r.lines || []).map(function (l) {
      var period = l.chargePeriodStart || l.chargePeriodEnd ? day(l.chargePeriodStart) + ' – ' + day(l.chargePeriodEnd) : '';
      return el('tr', {
        'class': 'invoice-line', 'data-line': String(l.lineNumber || ''), 'data-class': l.chargeClass || '', 'data-reason': l.taxReason || ''
      }, [
        cell(String(l.lineNumber || ''), { 'class': 'num muted' }),
        cell(l.accountId, { 'class': 'ids', 'data-k': 'account' }),
        cell(l.service, { 'data-k': 'service' }),
        el('td', { title: period ? (l.chargePeriodStart || '') + ' to ' + (l.chargePeriodEnd || '') : null }, [
          el('span', { 'data-k': 'charge-month', text: l.chargeMonth || '—' }), note(period)]),
        el('td', null, el('span', { 'class': 'badge class-' + String(l.chargeClass || '').toLowerCase(), 'data-k': 'class', text: (l.chargeClass || '—').toLowerCase() })),
        cell(l.usageRecords || '0', { 'class': 'num muted', 'data-k': 'records' }),
        el('td', { 'class': 'num' }, [figure(l.billedCost, 'billed-cost'), ' ', el('span', { 'class': 'muted', 'data-k': 'usage-currency', text: l.usageCurrency || '' })]),
        el('td', { 'class': 'num' }, [figure(l.fxRate, 'fx-rate'),
          l.fxEffectiveDate ? el('span', { 'class': 'muted note' }, ['as of ', el('span', { 'data-k': 'fx-date', text: l.fxEffectiveDate })]) : null]),
        amount(l.converted, 'converted'),
        amount(l.amount, 'amount'),
        el('td', null, [el('span', { 'data-k': 'jurisdiction', text: l.jurisdiction || '—' }), ' ', el('span', { 'class': 'muted', 'data-k': 'treatment', text: treatment(l.taxReason) })])
      ]);
    });
    var linesFoot = [el('tr', { 'class': 'invoice-subtotal' }, [
      blank(), el('th', { text: 'Subtotal', colspan: 2 }), el('td', { 'class': 'muted', colspan: 6, text: 'sum of the rounded line amounts' }), amount(r.subtotal, 'subtotal'), blank()
    ])];
    var taxes = (r.taxes || []).map(function (t) {
      return el('tr', { 'class': 'invoice-tax', 'data-jurisdiction': t.jurisdiction || '', 'data-reason': t.reason || '' }, [
        cell(t.jurisdiction, { 'data-k': 'jurisdiction' }),
        cell(treatment(t.reason), { 'class': 'muted', 'data-k': 'treatment' }),
        amount(t.ratePercentage, 'rate', 'pct'),
        cell(t.rateEffectiveFrom, { 'class': 'muted', 'data-k': 'rate-from' }),
        amount(t.taxable, 'taxable'),
        amount(t.tax, 'tax')
      ]);
    });
    var sums = el('table', { 'class': 'data sums' }, el('tbody', null, [
      el('tr', { 'class': 'invoice-sum' }, [el('th', { text: 'Subtotal' }), amount(r.subtotal, 'subtotal')]),
      el('tr', { 'class': 'invoice-sum' }, [el('th', { text: 'Tax' }), amount(r.tax, 'tax')]),
      el('tr', { 'class': 'invoice-sum grand' }, [el('th', { text: 'Total ' + cur }), amount(r.total, 'total')])
    ]));
    return el('div', { 'class': 'detail' }, [
      el('p', { 'class': 'muted small' }, [el('span', { 'class': 'detail-title', text: 'Invoice ' + (r.invoiceId || '') }), to.length ? ' · ' + to.join(' · ') : '']),
      lines.length ? table(['#', 'Account', 'Service', 'Charge month · period', 'Class', num('Records'), num('Billed cost'), num('FX rate'), num('Converted ' + cur), num('Amount ' + cur), 'Tax'],
        lines, linesFoot, { 'class': 'data lines' }) : el('p', { 'class': 'muted', text: 'No line.' }),
      el('div', { 'class': 'detail-foot' }, [
        taxes.length ? table(['Jurisdiction', 'Treatment', num('Rate'), 'Rate from', num('Taxable ' + cur), num('Tax ' + cur)], taxes, null, { 'class': 'data taxes' }) : el('p', { 'class': 'muted', text: 'No tax row.' }),
        sums
      ])
    ]);
  }

  function renderPayments(d) {
    var box = $('payments-body');
    var balances = d.payerBalances || [];
    var many = unique(balances.map(function (b) { return b.payerAccountId || ''; })).length > 1;
    if (balances.length) {
      box.appendChild(el('h3', { text: 'Balance of ' + state.month + "'s invoices" }));
      box.appendChild(table((many ? ['Payer'] : []).concat(['Cur.', num('Issued'), num('Paid'), num('Outstanding'), num('Credit notes'),
        num('Unapplied credit'), num('Balance')]), balances.map(function (b) {
        return el('tr', { 'class': 'balance-row', 'data-currency': b.currency || '' }, (many ? [cell(b.payerAccountId)] : []).concat([
          cell(b.currency), amount(b.issued, 'issued'), amount(b.paid, 'paid'), amount(b.outstanding, 'outstanding'),
          amount(b.creditNotes, 'credit-notes'), amount(b.unappliedCredit, 'unapplied'), amount(b.balance, 'balance')
        ]));
      }), null, { id: 'balances', 'class': 'data' }));
    }
    // Credit notes (invoices whose total is negative), and what their credit
    // settled: shown when the month has any. A credit note's id wraps at its
    // hyphens and its source organization is noted under it, so that the
    // tables fit the half-width panel.
    var credits = d.creditApplications || [];
    var notes = (d.invoices || []).filter(function (r) { return r.status === 'CREDIT' || r.status === 'CREDIT_APPLIED'; });
    if (notes.length || credits.length) {
      box.appendChild(el('h3', { text: 'Credit notes' }));
      if (notes.length) {
        box.appendChild(el('div', { 'class': 'table-wrap' }, table(['Credit note', num('Issued'), num('Applied'), num('Remaining'), 'Status'], notes.map(function (r) {
          return el('tr', { 'class': 'credit-note-row', 'data-invoice': r.invoiceId || '' }, [
            el('td', { 'class': 'ids wrap' }, [r.invoiceId || '—', el('br'), note('source ' + (r.sourceAccountId || '') + ' · ' + (r.currency || ''))]),
            amount(r.issued, 'issued'), amount(r.creditApplied, 'applied'), amount(r.remainingCredit, 'remaining'),
            el('td', { 'data-k': 'status' }, statusBadge(r.status))
          ]);
        }), null, { id: 'credit-notes', 'class': 'data' })));
      }
      if (credits.length) {
        box.appendChild(el('div', { 'class': 'table-wrap' }, table(['Credit note', 'Applied', num('Amount'), num('Remaining'), 'Applied to'], credits.map(function (c) {
          var alloc = el('ul', { 'class': 'alloc' }, (c.allocations || []).map(function (a) {
            return el('li', { title: a.invoiceId || '', 'data-invoice': a.invoiceId || '' }, [
              el('span', { 'class': 'ids', text: a.billSourceAccountId || '' }), ' ', el('span', { 'class': 'num', text: a.amount || '' }),
              el('span', { 'class': 'muted', text: ', then ' + (a.outstandingAfter || '') + ' due' })]);
          }));
          return el('tr', { 'class': 'credit-row', 'data-credit-note': c.creditNoteId || '', 'data-seq': String(c.seq || '') }, [
            cell(c.creditNoteId, { 'class': 'ids wrap' }), cell((c.appliedAt || '').slice(0, 10)),
            amount(c.amount, 'amount'), amount(c.remainingCredit, 'remaining'), el('td', { 'class': 'wrap' }, alloc)
          ]);
        }), null, { id: 'credit-applications', 'class': 'data' })));
      }
    }
    var payments = d.payments || [];
    box.appendChild(el('h3', { text: 'Payments applied to them' }));
    if (!payments.length) {
      box.appendChild(el('p', { 'class': 'muted', text: 'None.' }));
      return;
    }
    box.appendChild(table(['Payment', 'Received', 'Method', 'Cur.', num('Amount'), num('Unapplied'), 'Applied to'], payments.map(function (p) {
      var alloc = el('ul', { 'class': 'alloc' }, (p.allocations || []).map(function (a) {
        return el('li', { title: a.invoiceId || '', 'data-invoice': a.invoiceId || '' }, [
          el('span', { 'class': 'ids', text: a.billSourceAccountId || '' }), ' ', el('span', { 'class': 'num', text: a.amount || '' }),
          el('span', { 'class': 'muted', text: ', then ' + (a.outstandingAfter || '') + ' due' })]);
      }));
      return el('tr', { 'class': 'payment-row', 'data-payment': p.paymentId || '' }, [
        cell(p.paymentId, { 'class': 'ids' }), cell((p.receivedAt || '').slice(0, 10)), cell(p.method), cell(p.currency),
        amount(p.amount, 'amount'), amount(p.unapplied, 'unapplied'), el('td', { 'class': 'wrap' }, alloc)
      ]);
    }), null, { id: 'payments', 'class': 'data' }));
  }

  function renderTax(d) {
    var rows = (d.rows || []).slice().sort(function (a, b) {
      return (a.jurisdiction || '').localeCompare(b.jurisdiction || '') || (a.invoiceId || '').localeCompare(b.invoiceId || '');
    });
    if (!rows.length) {
      $('tax-table').appendChild(el('p', { 'class': 'muted', text: 'No tax: no invoice issued for ' + state.month + '.' }));
      return;
    }
    var body = rows.map(function (r) {
      return el('tr', { 'class': 'tax-row', 'data-jurisdiction': r.jurisdiction || '', 'data-invoice': r.invoiceId || '', title: r.invoiceId || '' }, [
        cell(r.jurisdiction), cell(r.sourceAccountId, { 'class': 'ids' }), cell(r.currency),
        amount(r.taxable, 'taxable'), amount(r.ratePercentage, 'rate', 'pct'), amount(r.tax, 'tax'),
        cell(r.reason ? r.reason.replace('_', ' ').toLowerCase() : 'taxed', { 'class': 'muted' })
      ]);
    });
    var foot = (d.totals || []).map(function (t) {
      return el('tr', { 'class': 'tax-total', 'data-currency': t.currency || '' }, [
        el('th', { text: 'Total ' + (t.currency || '') }), blank(), cell(t.currency), amount(t.taxable, 'taxable'), blank(), amount(t.tax, 'tax'), blank()
      ]);
    });
    $('tax-table').appendChild(table(['Jurisdiction', 'Source org.', 'Cur.', num('Taxable'), num('Rate'), num('Tax'), 'Treatment'], body, foot, { id: 'tax', 'class': 'data' }));
  }

  // ---- wiring ------------------------------------------------------------------

  function start() {
    $('signin-form').addEventListener('submit', function (e) {
      e.preventDefault();
      var t = $('token').value.trim();
      $('token').value = '';
      if (t) { signIn(t, state.month); }
    });
    $('signout').addEventListener('click', function () { signOut(''); });
    $('month').addEventListener('change', function () {
      var m = validMonth($('month').value);
      if (m && state.token && m !== state.month) { loadMonth(m); }
    });
    $('month-prev').addEventListener('click', function () { if (state.month && state.token) { loadMonth(shiftMonth(state.month, -1)); } });
    $('month-next').addEventListener('click', function () { if (state.month && state.token) { loadMonth(shiftMonth(state.month, 1)); } });
    $('drill-close').addEventListener('click', function () { state.drillSeq++; $('panel-drill').hidden = true; });

    window.addEventListener('hashchange', function () {
      var link = fromHash();
      if (link.token) {
        signIn(link.token, link.month || state.month);
      } else if (link.month && state.token && link.month !== state.month) {
        loadMonth(link.month);
      }
    });

    var link = fromHash();
    state.month = link.month;
    var token = link.token || storedToken();
    if (token) {
      signIn(token, link.month);
    } else {
      signOut('');
    }
  }

  // fromHash reads #token=…&month=… (the link `make demo` prints). The
  // fragment never reaches the server; a token in it moves to sessionStorage
  // and off the address bar at once.
  function fromHash() {
    var params = new URLSearchParams(window.location.hash.replace(/^#/, ''));
    var month = validMonth(params.get('month') || '');
    var token = (params.get('token') || '').trim();
    if (token) {
      storeToken(token);
      if (window.history && window.history.replaceState) {
        window.history.replaceState(null, '', window.location.pathname + window.location.search + (month ? '#month=' + month : ''));
      }
    }
    return { token: token, month: month };
  }

  if (document.readyState === 'loading') {
    document.addEventListener('DOMContentLoaded', start);
  } else {
    start();
  }
}());

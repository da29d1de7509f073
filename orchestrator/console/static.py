"""The console's only script and stylesheet, served by us (no build step, nothing from the
internet). The read-only pages work without the script; it adds sign-in and live refresh."""

from __future__ import annotations

SCRIPT = r"""'use strict';
(function () {
  function show(text) {
    var box = document.getElementById('signin-message');
    if (box) { box.textContent = text; }
  }
  function nextPage() {
    var next = new URLSearchParams(location.search).get('next') || '/console';
    return /^\/console(\/|$)/.test(next) && next.indexOf('//') < 0 ? next : '/console';
  }
  async function startSession(token) {
    var answer = await fetch('/console/session', {
      method: 'POST', credentials: 'same-origin',
      headers: { 'Authorization': 'Bearer ' + token.trim() }
    });
    if (answer.status === 204) { location.assign(nextPage()); return; }
    show(answer.status === 403 ? 'This account is not an operator of the console.'
      : 'Sign-in refused (HTTP ' + answer.status + ').');
  }
  async function passwordSignIn(form) {
    var body = document.body.dataset;
    var answer = await fetch(body.supabaseUrl + '/auth/v1/token?grant_type=password', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', 'apikey': body.anonKey || '' },
      body: JSON.stringify({ email: form.email.value, password: form.password.value })
    });
    form.password.value = '';
    if (!answer.ok) { show('Supabase Auth refused the email or password.'); return; }
    var session = await answer.json();
    await startSession(session.access_token);
  }
  function guard(handler) {
    return function (event) {
      event.preventDefault();
      handler(event.target).catch(function () { show('Sign-in failed: network error.'); });
    };
  }
  function refresh(target) {
    var url = target.dataset.refresh;
    var every = parseInt(target.dataset.every || '5000', 10);
    setInterval(function () {
      fetch(url, { credentials: 'same-origin', headers: { 'Accept': 'text/html' } })
        .then(function (r) {
          if (r.status === 200) { return r.text(); }
          if (r.status === 401) { location.assign('/console/signin'); }
          throw new Error('refresh ' + r.status);
        })
        .then(function (html) {
          target.innerHTML = html;
          var stamp = document.getElementById('refreshed');
          if (stamp) { stamp.textContent = 'refreshed ' + new Date().toLocaleTimeString(); }
        })
        .catch(function () {});
    }, every);
  }
  document.addEventListener('DOMContentLoaded', function () {
    var password = document.getElementById('signin-password');
    if (password) { password.addEventListener('submit', guard(passwordSignIn)); }
    var token = document.getElementById('signin-token');
    if (token) {
      token.addEventListener('submit', guard(function (form) {
        var value = form.access_token.value; form.access_token.value = '';
        return startSession(value);
      }));
    }
    document.querySelectorAll('[data-refresh]').forEach(refresh);
    document.querySelectorAll('form[data-confirm]').forEach(function (form) {
      form.addEventListener('submit', function (event) {
        if (!window.confirm(form.dataset.confirm)) { event.preventDefault(); }
      });
    });
  });
})();
"""

STYLE = """
:root { --fg: #1d2330; --muted: #5b6475; --line: #d8dce3; --bg: #f6f7f9; --accent: #2456c7;
  --bad: #b42318; --good: #067647; --warn: #b54708; font-family: system-ui, sans-serif; }
* { box-sizing: border-box; }
body { margin: 0; color: var(--fg); background: var(--bg); font-size: 15px; line-height: 1.4; }
header { display: flex; flex-wrap: wrap; gap: .5rem 1rem; align-items: center;
  padding: .6rem 1rem; background: #fff; border-bottom: 1px solid var(--line); }
header h1 { font-size: 1.05rem; margin: 0 1rem 0 0; }
header nav a { margin-right: .8rem; }
header form { margin: 0; }
header .who { margin-left: auto; color: var(--muted); font-size: .85rem; }
main { padding: 1rem; max-width: 1200px; margin: 0 auto; }
a { color: var(--accent); }
section { background: #fff; border: 1px solid var(--line); border-radius: 6px;
  padding: .8rem 1rem; margin-bottom: 1rem; overflow-x: auto; }
h2 { font-size: 1rem; margin: 0 0 .6rem; }
table { border-collapse: collapse; width: 100%; font-size: .9rem; }
th, td { text-align: left; padding: .3rem .5rem; border-bottom: 1px solid var(--line);
  vertical-align: top; }
th { color: var(--muted); font-weight: 600; }
code, .mono { font-family: ui-monospace, monospace; font-size: .85em; word-break: break-all; }
.muted { color: var(--muted); }
.explain { font-size: 1.05rem; padding: .6rem .8rem; background: #eef3ff;
  border-left: 4px solid var(--accent); margin: 0; }
.badge { display: inline-block; padding: 0 .45rem; border-radius: 9px; font-size: .8rem;
  background: var(--line); }
.badge.ringing { background: #fff2d6; } .badge.accepted { background: #dcfae6; }
.badge.engaged, .badge.failed { background: #fee4e2; color: var(--bad); }
.message { padding: .5rem .8rem; border-radius: 4px; background: #dcfae6; }
.message.error { background: #fee4e2; }
form.inline { display: inline-flex; flex-wrap: wrap; gap: .4rem; align-items: center; }
input, select, button, textarea { font: inherit; padding: .3rem .5rem; }
button { cursor: pointer; }
button.danger { color: #fff; background: var(--bad); border: 0; border-radius: 4px; }
.grid { display: grid; grid-template-columns: repeat(auto-fit, minmax(340px, 1fr)); gap: 1rem; }
.grid section { margin: 0; }
svg.axis { width: 100%; height: auto; display: block; }
svg.axis text { font-size: 12px; fill: var(--muted); }
svg.axis .lane { stroke: var(--line); }
svg.axis circle { stroke: #fff; stroke-width: 1.5; fill: var(--accent); }
svg.axis .k-call_ended circle, svg.axis .k-push_failed circle,
svg.axis .k-device_pruned circle { fill: var(--bad); }
svg.axis .k-ack circle, svg.axis .k-call_accepted circle { fill: var(--good); }
svg.axis .k-operator_action circle { fill: var(--warn); }
tr.event td.lane-cell:empty { background: transparent; }
tr.event td.hit { font-weight: 500; }
.signin { max-width: 420px; margin: 2rem auto; }
.signin form { display: grid; gap: .5rem; margin-bottom: 1rem; }
.signin label { display: grid; gap: .2rem; }
@media (max-width: 700px) {
  svg.axis { min-width: 640px; }  /* scrolls sideways in its section, stays readable */
  main { padding: .5rem; }
  table.timeline thead { display: none; }
  table.timeline tr.event { display: block; border-bottom: 1px solid var(--line);
    padding: .3rem 0; }
  table.timeline td { display: inline; border: 0; padding: 0 .3rem; }
  table.timeline td.lane-cell:empty { display: none; }
  table.timeline td.hit::before { content: attr(data-lane) ": "; color: var(--muted); }
  header .who { margin-left: 0; width: 100%; }
}
"""

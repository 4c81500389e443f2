// The netban web console's script. It keeps the API token the operator logged in with in
// sessionStorage (this tab only) and sends it as a bearer header: the browser never sends it by
// itself, so no other site can make a logged-in browser act (no cookie, nothing to forge).
// It fetches the view the address names (server-rendered, escaped HTML from /ui/view/...),
// listens to /ui/events and, on each change, swaps in the view's parts marked data-live.
// Bans and unbans go through the JSON API (/v1/bans), which checks the token's role.
'use strict';
(() => {
  const KEY = 'netban-token';
  const $ = (id) => document.getElementById(id);
  const token = () => sessionStorage.getItem(KEY);
  let stream = null;
  let rendering = null;
  let again = false;

  function notice(text, bad) {
    const n = $('notice');
    n.textContent = text;
    n.className = bad ? 'bad' : '';
  }

  function setLive(state, text) {
    document.body.dataset.live = state;
    $('live').textContent = text;
  }

  // /ui/targets?x=1 -> /ui/view/targets?x=1 (bans when the path names no view).
  function viewUrl() {
    const page = location.pathname.replace(/^\/ui\/?/, '').replace(/\/$/, '') || 'bans';
    return '/ui/view/' + encodeURIComponent(page) + location.search;
  }

  async function errorText(response) {
    try {
      const body = await response.clone().json();
      if (body && typeof body.error === 'string') return body.error;
    } catch (e) { /* not JSON */ }
    return response.status + ' ' + response.statusText;
  }

  async function call(method, url, body) {
    const init = { method, headers: { Authorization: 'Bearer ' + token() }, cache: 'no-store' };
    if (body !== undefined) {
      init.headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    const response = await fetch(url, init);
    if (response.status === 401) {
      const why = await errorText(response);
      logout('The token was refused: ' + why);
      throw new Error(why);
    }
    return response;
  }

  // The whole view the first time; afterwards only its live parts, so that a half-typed
  // form or a focused field survives an update.
  async function render(whole) {
    const response = await call('GET', viewUrl());
    const html = await response.text();
    const view = $('view');
    if (whole || !view.firstElementChild) {
      view.innerHTML = html;
      return;
    }
    const fresh = new DOMParser().parseFromString(html, 'text/html');
    for (const part of fresh.querySelectorAll('[data-live][id]')) {
      const old = document.getElementById(part.id);
      if (old) old.replaceWith(document.adoptNode(part));
    }
  }

  // Updates never pile up: one more refresh if asked while one runs.
  function refresh() {
    if (rendering) {
      again = true;
      return;
    }
    rendering = render(false)
      .catch(() => {})
      .finally(() => {
        rendering = null;
        if (again) {
          again = false;
          refresh();
        }
      });
  }

  // Reads the server-sent events with fetch (EventSource cannot send the bearer header).
  async function listen() {
    const controller = new AbortController();
    stream = controller;
    let delay = 1000;
    while (token() && !controller.signal.aborted) {
      try {
        const response = await fetch('/ui/events', {
          headers: { Authorization: 'Bearer ' + token() },
          signal: controller.signal,
          cache: 'no-store',
        });
        if (response.status === 401) {
          logout('The token was refused: ' + (await errorText(response)));
          return;
        }
        if (!response.ok || !response.body) throw new Error(await errorText(response));
        const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
        let buffer = '';
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buffer += value;
          let end;
          while ((end = buffer.indexOf('\n\n')) >= 0) {
            const message = buffer.slice(0, end);
            buffer = buffer.slice(end + 2);
            const kind = /^event: ?(.*)$/m.exec(message);
            if (!kind) continue; // a keep-alive comment
            if (kind[1] === 'ready') {
              delay = 1000;
              setLive('on', 'live');
            }
            refresh();
          }
        }
      } catch (e) {
        if (controller.signal.aborted) return;
      }
      setLive('off', 'reconnecting…');
      await new Promise((resolve) => setTimeout(resolve, delay));
      delay = Math.min(delay * 2, 30000);
    }
  }

  async function start() {
    $('login').hidden = true;
    $('logout').hidden = false;
    try {
      await render(true);
    } catch (e) {
      return;
    }
    listen();
  }

  function logout(why) {
    sessionStorage.removeItem(KEY);
    if (stream) stream.abort();
    stream = null;
    $('view').textContent = '';
    $('login').hidden = false;
    $('logout').hidden = true;
    setLive('off', '');
    notice(why || '', Boolean(why));
  }

  async function ban(form) {
    const f = form.elements;
    const body = {
      prefixes: [f.address.value.trim()],
      source: f.source.value.trim(),
      duration: f.permanent.checked ? 'permanent' : { seconds: Number(f.seconds.value) },
    };
    if (f.reason.value.trim()) body.reason = f.reason.value.trim();
    const response = await call('POST', '/v1/bans', body);
    if (response.status !== 200 && response.status !== 422) {
      notice('Ban refused: ' + (await errorText(response)), true);
      return;
    }
    const answer = await response.json();
    if (!answer.results) {
      notice('Ban refused: ' + (await errorText(response)), true);
      return;
    }
    const refused = answer.results.filter((r) => r.error);
    if (refused.length) {
      notice('Refused ' + refused.map((r) => r.prefix + ': ' + r.error).join('; '), true);
    } else {
      notice('Banned ' + answer.results.map((r) => r.prefix).join(', '));
      f.address.value = '';
    }
  }

  async function unban(prefix, source) {
    let url = '/v1/bans/' + encodeURIComponent(prefix);
    if (source) url += '?source=' + encodeURIComponent(source);
    const response = await call('DELETE', url);
    if (!response.ok) {
      notice('Unban refused: ' + (await errorText(response)), true);
      return;
    }
    const [result] = (await response.json()).results;
    if (!result.changed) notice(prefix + ' was not banned by ' + (source || 'any source'));
    else if (result.still_banned) notice('Unbanned ' + prefix + ' (still banned by other sources)');
    else notice('Unbanned ' + prefix);
  }

  document.addEventListener('submit', (event) => {
    const form = event.target;
    if (form.id === 'login') {
      event.preventDefault();
      sessionStorage.setItem(KEY, form.elements.token.value.trim());
      form.reset();
      notice('');
      start();
    } else if (form.id === 'ban-form') {
      event.preventDefault();
      ban(form).catch((e) => notice(String(e), true));
    }
  });

  document.addEventListener('click', (event) => {
    const button = event.target.closest('button');
    if (!button) return;
    if (button.id === 'logout') logout('');
    else if (button.classList.contains('unban')) {
      unban(button.dataset.prefix, button.dataset.source).catch((e) => notice(String(e), true));
    }
  });

  document.addEventListener('DOMContentLoaded', () => (token() ? start() : logout('')));
})();

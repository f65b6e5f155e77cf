// lieur's web UI: three views over the JSON API of the binder that served
// the page. Plain ES modules, no framework and no build step: the page is
// a few hundred lines the binary embeds as they are.
//
//   #/services[/TYPE]  services.js  blocking query on GET /v1/services;
//                                   a type's GET /v1/leases every 2 s
//   #/cluster          cluster.js   GET /v1/cluster/status every 1.5 s
//   #/changes          changes.js   blocking query on GET /v1/events

import * as services from './services.js';
import * as cluster from './cluster.js';
import * as changes from './changes.js';
import {call, token, onTokenChange, offTokenChange, setTokenPrompt, askToken, ApiError} from './api.js';
import {tokenPrompt} from './dialogs.js';
import {clearAll} from './status.js';

const VIEWS = {services, cluster, changes};
const TITLES = {services: 'Services', cluster: 'Cluster', changes: 'Changes'};

let current = null; // {name, view}

function parse(hash) {
  const parts = hash.replace(/^#\/?/, '').split('/').map((p) => {
    try { return decodeURIComponent(p); } catch { return p; }
  });
  const name = VIEWS[parts[0]] ? parts[0] : 'services';
  return {name, params: {type: name === 'services' ? (parts[1] || '') : ''}};
}

function route() {
  if (location.hash && !location.hash.startsWith('#/')) return; // an in-page anchor
  const {name, params} = parse(location.hash);
  const main = document.getElementById('main');
  if (current && current.name === name) {
    current.view.update(params);
  } else {
    if (current) current.view.unmount();
    clearAll();
    current = {name, view: VIEWS[name].mount(main, params)};
  }
  document.title = `${TITLES[name]}${params.type ? ` · ${params.type}` : ''} · lieur`;
  for (const a of document.querySelectorAll('nav a[data-view]')) {
    if (a.dataset.view === name) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
}

function showToken() {
  const b = document.getElementById('token-button');
  b.textContent = token() ? 'Token: set' : 'Token';
  b.setAttribute('aria-label', token() ? 'Token set for this tab: change or forget it' : 'Enter a token for this tab');
}

// Which binder served the page: asked once; the cluster view shows more.
async function whoAmI() {
  const el = document.getElementById('binder');
  try {
    const {data} = await call('GET', '/v1/status');
    el.textContent = `binder ${data.id} (${data.state})`;
    el.dataset.binder = data.id;
  } catch (e) {
    el.textContent = `binder at ${location.host}`;
    // With --auth-reads: once the views have a token, ask again.
    if (e instanceof ApiError && e.status === 401) onTokenChange(function again(t) {
      if (t) { offTokenChange(again); whoAmI(); }
    });
  }
}

function start() {
  setTokenPrompt(tokenPrompt);
  onTokenChange(showToken);
  showToken();
  document.getElementById('token-button').addEventListener('click', () => { askToken(''); });
  document.getElementById('skip').addEventListener('click', (ev) => {
    ev.preventDefault();
    document.getElementById('main').focus();
  });
  window.addEventListener('hashchange', route);
  if (!location.hash) history.replaceState(null, '', '#/services');
  route();
  whoAmI();
}

start();

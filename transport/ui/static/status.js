// The banner: what is wrong right now, one line per source (the services
// query, the cluster poll, ...), gone as soon as that source works again.

const problems = new Map();

export function problem(key, message) {
  if (problems.get(key) === message) return;
  problems.set(key, message);
  render();
}

export function clear(key) {
  if (problems.delete(key)) render();
}

export function clearAll() {
  problems.clear();
  render();
}

function render() {
  const banner = document.getElementById('banner');
  if (!banner) return;
  banner.replaceChildren(...[...problems.values()].map((m) => {
    const p = document.createElement('p');
    p.textContent = m;
    return p;
  }));
  banner.hidden = problems.size === 0;
  const live = document.getElementById('live');
  if (live) {
    live.textContent = problems.size === 0 ? 'live' : 'retrying';
    live.className = problems.size === 0 ? 'live ok' : 'live bad';
  }
}

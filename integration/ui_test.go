package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/lieur/lieur/transport/wire"
)

// The web UI (transport/ui) driven in a real browser, Debian's headless
// Chromium, against real clusters. Without Chromium the tests say why and
// skip; .ci/run installs it, so in CI they run.

// findChromium returns the browser to drive, or why there is none.
func findChromium() (string, string) {
	if p := os.Getenv("LIEUR_CHROMIUM"); p != "" {
		return p, ""
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "headless-shell"} {
		if p, err := exec.LookPath(name); err == nil {
			return p, ""
		}
	}
	return "", "no Chromium on PATH (chromium, chromium-browser, google-chrome; or set LIEUR_CHROMIUM): " +
		"`apt-get install chromium` (Debian) to run the browser tests; .ci/run installs it"
}

// browser is one headless Chromium tab and what its console said.
type browser struct {
	t   *testing.T
	ctx context.Context
	dir string // where screenshots go

	mu      sync.Mutex
	console []chromedp.ConsoleMessage
}

// newBrowser starts Chromium (headless, no sandbox: CI runs as root) with
// a 1280 px wide window, and records every console message of its tab.
func newBrowser(t *testing.T, extra ...chromedp.ExecAllocatorOption) *browser {
	t.Helper()
	path, why := findChromium()
	if path == "" {
		t.Log(why)
		t.Skip(why)
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(path), chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.WindowSize(1280, 900), chromedp.UserDataDir(t.TempDir()))
	opts = append(opts, extra...)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelTab := chromedp.NewContext(actx)
	ctx, cancelTimeout := context.WithTimeout(ctx, 2*time.Minute)
	t.Cleanup(func() { cancelTimeout(); cancelTab(); cancelAlloc() })
	dir := os.Getenv("LIEUR_UI_SCREENSHOTS") // to keep them after the test
	if dir == "" {
		dir = t.TempDir()
	}
	b := &browser{t: t, ctx: ctx, dir: dir}
	messages := chromedp.Console(ctx) // starts the browser; subscribed from now on
	go func() {
		for m, err := range messages {
			if err != nil {
				return
			}
			b.mu.Lock()
			b.console = append(b.console, m)
			b.mu.Unlock()
		}
	}()
	require.NoError(t, chromedp.Do(ctx, chromedp.EmulateViewport(1280, 900)), "start %s", path)
	return b
}

func (b *browser) do(what string, actions ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	require.NoError(b.t, chromedp.Do(b.ctx, actions...), what)
}

// eval runs a JavaScript expression in the page and decodes its value.
func evalIn[T any](b *browser, js string) T {
	b.t.Helper()
	v, err := chromedp.Run(b.ctx, chromedp.Evaluate[T](js))
	require.NoError(b.t, err, js)
	return v
}

// waitJS waits until a JavaScript expression is truthy in the page,
// checking on every DOM change; it returns how long that took.
func (b *browser) waitJS(what, js string, timeout time.Duration) time.Duration {
	b.t.Helper()
	start := time.Now()
	_, err := chromedp.Run(b.ctx, chromedp.Poll[chromedp.Void](js, chromedp.WithPollingMutation(), chromedp.WithPollingTimeout(timeout)))
	if err != nil {
		b.shot("failure")
		b.t.Fatalf("waiting %s for %s: %v\npage text:\n%s", timeout, what, err, evalIn[string](b, `document.body.innerText`))
	}
	return time.Since(start)
}

// shot writes a screenshot of the whole page and prints its path.
func (b *browser) shot(name string) {
	b.t.Helper()
	buf, err := chromedp.Run(b.ctx, chromedp.FullScreenshot(100)) // 100: PNG
	require.NoError(b.t, err)
	path := filepath.Join(b.dir, name+".png")
	require.NoError(b.t, os.WriteFile(path, buf, 0o644))
	b.t.Logf("screenshot of %s: %s", name, path)
}

// errors returns the console messages that are errors: uncaught
// exceptions and console.error calls of the page, and the browser's own
// error entries (a failed load, a CSP violation) unless pageOnly, except
// those whose text or URL contains one of expected.
func (b *browser) errors(pageOnly bool, expected ...string) []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []string
	for _, m := range b.console {
		if !m.IsException() && m.Type != chromedp.ConsoleError {
			continue
		}
		line := fmt.Sprintf("%s (%s:%d)", m, m.URL, m.Line)
		if m.Source != "" && (pageOnly || slices.ContainsFunc(expected, func(e string) bool { return strings.Contains(line, e) })) {
			continue
		}
		out = append(out, line)
	}
	return out
}

// assertNoConsoleErrors: none at all, but for the browser's entries about
// the expected failed requests.
func (b *browser) assertNoConsoleErrors(step string, expected ...string) {
	b.t.Helper()
	assert.Empty(b.t, b.errors(false, expected...), "console errors after %s", step)
}

// goTo changes the page's route (no reload) and waits for its heading.
func (b *browser) goTo(hash, heading string) {
	b.t.Helper()
	b.do("route "+hash, chromedp.Evaluate[chromedp.Void](fmt.Sprintf(`location.hash = %q`, hash)))
	b.waitJS("heading "+heading, fmt.Sprintf(`document.querySelector('main h1')?.textContent === %q`, heading), 5*time.Second)
}

func jsString(s string) string {
	data, _ := json.Marshal(s)
	return string(data)
}

func registerWith(t *testing.T, url, token string, req wire.RegisterRequest) {
	t.Helper()
	body, err := json.Marshal(req)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, authedCall(t, "POST", url+"/v1/services", token, string(body)))
}

// TestUIInABrowser: the services view lists what the API lists, with a
// leased instance's last heartbeat age (the leader's) counting on; a
// registration made through the API appears without a reload within a
// second; a deregistration from the UI (which asks for the token) removes
// the instance from every binder; a report of a dead instance shows
// "removed", of a live one "alive"; the changes view shows why each left;
// the cluster view names the leader and shows a SIGKILLed follower as
// down; the page fits a phone-width window; nothing is logged as an error
// on the console. A binder that stops answering puts up the banner.
func TestUIInABrowser(t *testing.T) {
	if _, why := findChromium(); why != "" {
		t.Skip(why)
	}
	file := filepath.Join(t.TempDir(), "tokens")
	require.NoError(t, os.WriteFile(file, []byte(strings.Join([]string{
		tokCluster + " cluster", tokRegister + " register", tokRead + " read",
	}, "\n")+"\n"), 0o600))
	c := startCluster(t, 3, "--token-file", file)
	lead := c.leader()
	var followers []int
	for i := range c.nodes {
		if i != lead {
			followers = append(followers, i)
		}
	}
	page := c.nodes[lead].url()
	other := c.nodes[followers[0]].url()

	echoA, _ := liveServer(t)
	echoB, _ := liveServer(t)
	dead := deadPort(t)
	registerWith(t, other, tokRegister, wire.RegisterRequest{Type: "echo", Address: "127.0.0.1", Port: echoA, Meta: map[string]string{"version": "1.2"}})
	registerWith(t, other, tokRegister, wire.RegisterRequest{Type: "echo", Address: "127.0.0.1", Port: echoB, TTL: "30s"})
	registerWith(t, other, tokRegister, wire.RegisterRequest{Type: "web", Address: "127.0.0.1", Port: dead})
	c.waitConverged()

	b := newBrowser(t)

	// Services: the types and counts the API lists, then one type's ids.
	b.do("open the UI", chromedp.Navigate(page+"/ui/"))
	b.waitJS("the services table", `document.querySelectorAll('table.types tbody tr').length === 2`, 10*time.Second)
	var list wire.ServicesResponse
	code, err := getJSON(page+"/v1/services", &list)
	require.NoError(t, err)
	require.Equal(t, 200, code)
	want := map[string]int{}
	for _, s := range list.Services {
		want[s.Type]++
	}
	got := evalIn[map[string]int](b, `Object.fromEntries([...document.querySelectorAll('table.types tbody tr')]
		.map((tr) => [tr.dataset.type, Number(tr.querySelector('[data-count]').dataset.count)]))`)
	assert.Equal(t, want, got, "the services view lists what the API lists")
	b.goTo("#/services/echo", "Services")
	b.waitJS("echo's instances", `document.querySelectorAll('table.instances tbody tr').length === 2`, 5*time.Second)
	var wantIDs []string
	for _, s := range list.Services {
		if s.Type == "echo" {
			wantIDs = append(wantIDs, s.ID)
		}
	}
	assert.Equal(t, wantIDs, evalIn[[]string](b, `[...document.querySelectorAll('table.instances tbody tr')].map((tr) => tr.dataset.id)`))
	assert.Contains(t, evalIn[string](b, `document.getElementById('instances').innerText`), "version")
	b.shot("services")
	b.assertNoConsoleErrors("the services view")

	// Heartbeat ages, the leader's, kept current in the instance table.
	// The leased instance has not heartbeat yet: its clock runs from its
	// registration (or from a new leader's start, on a machine loaded
	// enough to have held an election). A heartbeat through a follower
	// then shows as "N s ago", counting on; the instance without a lease
	// has no age.
	leasedID := fmt.Sprintf("echo-127.0.0.1-%d", echoB)
	cell := func(id string) string {
		return fmt.Sprintf(`document.querySelector('table.instances tr[data-id=%s] [data-heartbeat-for]')`, jsString(id))
	}
	b.waitJS("the leased instance's clock", cell(leasedID)+`?.dataset.since === 'registration' || `+
		cell(leasedID)+`?.dataset.since === 'leadership'`, 5*time.Second)
	plain := cell(fmt.Sprintf("echo-127.0.0.1-%d", echoA))
	assert.Equal(t, "none", evalIn[string](b, plain+`.dataset.since`))
	assert.Equal(t, "—", evalIn[string](b, plain+`.textContent`))
	require.Equal(t, http.StatusOK, authedCall(t, "PUT", other+"/v1/services/"+leasedID+"/heartbeat", tokRegister, ""))
	b.waitJS("the heartbeat's age", cell(leasedID)+`?.dataset.since === 'heartbeat' && /^\d+ s ago$/.test(`+cell(leasedID)+`.textContent)`,
		5*time.Second)
	assert.Less(t, evalIn[int](b, `Number(`+cell(leasedID)+`.dataset.ageMs)`), 5000, "a heartbeat sent just now")
	b.waitJS("the age to count on", `Number(`+cell(leasedID)+`.dataset.ageMs) >= 1500 && `+cell(leasedID)+`.textContent !== '0 s ago'`,
		5*time.Second)
	b.shot("services-heartbeat")

	// A registration through the API (at another binder) appears without
	// a reload, within a second of the request.
	echoC, _ := liveServer(t)
	newID := fmt.Sprintf("echo-127.0.0.1-%d", echoC)
	// The page records when the row appears (a mutation observer on the
	// document, installed before the registration is sent); the browser
	// and the test read the same wall clock.
	row := fmt.Sprintf(`document.querySelector('table.instances tr[data-id=%s]')`, jsString(newID))
	b.do("watch for the new row", chromedp.Evaluate[chromedp.Void](fmt.Sprintf(`(() => {
		window.__rowAt = 0;
		const seen = () => { if (!window.__rowAt && %s) window.__rowAt = Date.now(); };
		new MutationObserver(seen).observe(document, {subtree: true, childList: true, attributes: true});
	})()`, row)))
	require.Zero(t, evalIn[float64](b, `window.__rowAt`), "the row was there before the registration")
	sent := time.Now()
	registerWith(t, c.nodes[followers[1]].url(), tokRegister, wire.RegisterRequest{Type: "echo", Address: "127.0.0.1", Port: echoC})
	made := time.Now()
	b.waitJS("the registration in the page", `window.__rowAt > 0`, 5*time.Second)
	at := time.UnixMilli(int64(evalIn[float64](b, `window.__rowAt`)))
	t.Logf("a registration through the API (answered in %s) appeared in the page %s after it was made",
		made.Sub(sent).Round(time.Millisecond), at.Sub(made).Round(time.Millisecond))
	assert.Less(t, at.Sub(made), time.Second, "the page follows the table through blocking queries")

	// Deregistration from the UI, with the keyboard: the page asks to
	// confirm, the binder answers 401, the page asks for the token, then
	// sends it and the instance leaves every binder.
	victim := fmt.Sprintf("echo-127.0.0.1-%d", echoA)
	b.do("deregister with Enter", chromedp.SendKeys(chromedp.CSS(fmt.Sprintf(`button[data-key=%s]`, jsString("dereg:"+victim))), kb.Enter))
	b.waitJS("the confirmation", `document.getElementById('confirm-dialog').open`, 5*time.Second)
	b.shot("confirm")
	b.do("confirm", chromedp.SendKeys(chromedp.ID("confirm-yes"), kb.Enter))
	b.waitJS("the token dialog", `document.getElementById('token-dialog').open`, 5*time.Second)
	b.do("enter the token", chromedp.SendKeys(chromedp.ID("token-input"), tokRegister+kb.Enter))
	b.waitJS("the deregistration's outcome", `document.getElementById('action-result')?.dataset.outcome === 'removed'`, 10*time.Second)
	assert.Contains(t, evalIn[string](b, `document.getElementById('action-result').textContent`), "Deregistered "+victim)
	assert.Equal(t, tokRegister, evalIn[string](b, `sessionStorage.getItem('lieur.token')`), "the token is kept in sessionStorage")
	assert.Equal(t, "Token: set", evalIn[string](b, `document.getElementById('token-button').textContent`))
	waitFor(t, 5*time.Second, victim+" gone from every binder", func() (bool, string) {
		for i := range c.nodes {
			if ids := c.servicesAt(i); slices.Contains(ids, victim) {
				return false, fmt.Sprintf("%s still lists it: %v", c.nodes[i].id, ids)
			}
		}
		return true, ""
	})
	b.waitJS("the row to leave the page", fmt.Sprintf(`!document.querySelector('table.instances tr[data-id=%s]')`, jsString(victim)), 5*time.Second)

	// A report of a live instance: alive; of a dead one: removed. The
	// token entered above is used without asking again.
	alive := fmt.Sprintf("echo-127.0.0.1-%d", echoB)
	reportKey := jsString("report:" + alive)
	// Escape cancels, and the focus goes back to the button.
	b.do("report with Enter", chromedp.SendKeys(chromedp.CSS(fmt.Sprintf(`button[data-key=%s]`, reportKey)), kb.Enter))
	b.waitJS("the confirmation", `document.getElementById('confirm-dialog').open`, 5*time.Second)
	b.do("cancel with Escape", chromedp.SendKeys(chromedp.ID("confirm-no"), kb.Escape))
	b.waitJS("the dialog to close, the focus back", fmt.Sprintf(`!document.getElementById('confirm-dialog').open &&
		document.activeElement?.dataset.key === %s`, reportKey), 5*time.Second)
	b.do("report a live one", chromedp.Click(chromedp.CSS(fmt.Sprintf(`button[data-key=%s]`, reportKey))))
	b.waitJS("the confirmation", `document.getElementById('confirm-dialog').open`, 5*time.Second)
	b.do("confirm", chromedp.Click(chromedp.ID("confirm-yes")))
	b.waitJS("the verdict alive", `document.getElementById('action-result')?.dataset.outcome === 'alive'`, 10*time.Second)
	b.goTo("#/services/web", "Services")
	deadID := fmt.Sprintf("web-127.0.0.1-%d", dead)
	b.waitJS("web's instance", fmt.Sprintf(`!!document.querySelector('button[data-key=%s]')`, jsString("report:"+deadID)), 5*time.Second)
	b.do("report the dead one", chromedp.Click(chromedp.CSS(fmt.Sprintf(`button[data-key=%s]`, jsString("report:"+deadID)))))
	b.waitJS("the confirmation", `document.getElementById('confirm-dialog').open`, 5*time.Second)
	b.do("confirm", chromedp.Click(chromedp.ID("confirm-yes")))
	b.waitJS("the verdict removed", `document.getElementById('action-result')?.dataset.outcome === 'removed'`, 10*time.Second)
	assert.Contains(t, evalIn[string](b, `document.getElementById('action-result').textContent`), "Verdict for "+deadID+": removed")
	b.shot("report")
	// The browser logs the deregistration's 401 (sent without a token,
	// which made the page ask for one); nothing else.
	unauthorized := fmt.Sprintf("status of 401 (Unauthorized) (%s/v1/services/%s:", page, victim)
	b.assertNoConsoleErrors("the actions", unauthorized)

	// Changes: newest first, each removal with its reason.
	b.goTo("#/changes", "Changes")
	b.waitJS("the removals in the history", fmt.Sprintf(`!!document.querySelector('table.events tr[data-kind=removed][data-id=%s]') &&
		!!document.querySelector('table.events tr[data-kind=removed][data-id=%s]')`, jsString(victim), jsString(deadID)), 5*time.Second)
	reasons := evalIn[map[string]string](b, `Object.fromEntries([...document.querySelectorAll('table.events tr[data-kind=removed]')]
		.map((tr) => [tr.dataset.id, tr.querySelector('[data-reason]').dataset.reason]))`)
	assert.Equal(t, "deregistered", reasons[victim])
	assert.Equal(t, "reported-down", reasons[deadID])
	indexes := evalIn[[]int](b, `[...document.querySelectorAll('table.events tbody tr')].map((tr) => Number(tr.dataset.index))`)
	assert.True(t, slices.IsSortedFunc(indexes, func(a, b int) int { return b - a }), "newest first: %v", indexes)
	b.shot("changes")

	// Cluster: the leader (asked again: a loaded machine may have held an
	// election meanwhile); then a SIGKILLed follower, not the page's own
	// binder, shows as down.
	pageNode := lead
	lead = c.leader()
	followers = followers[:0]
	for i := range c.nodes {
		if i != lead {
			followers = append(followers, i)
		}
	}
	if followers[0] == pageNode {
		followers[0], followers[1] = followers[1], followers[0]
	}
	b.goTo("#/cluster", "Cluster")
	b.waitJS("the leader", fmt.Sprintf(`document.getElementById('leader')?.dataset.leader === %s &&
		document.querySelectorAll('table.binders tbody tr').length === 3`, jsString(c.nodes[lead].id)), 5*time.Second)
	states := evalIn[map[string]string](b, `Object.fromEntries([...document.querySelectorAll('table.binders tbody tr')].map((tr) => [tr.dataset.binder, tr.dataset.state]))`)
	assert.Equal(t, "leader", states[c.nodes[lead].id])
	for _, i := range followers {
		assert.Equal(t, "follower", states[c.nodes[i].id])
	}
	b.waitJS("agreement", `document.getElementById('agreement')?.dataset.agree === 'true'`, 5*time.Second)
	b.shot("cluster")
	killed := c.nodes[followers[0]].id
	c.kill(followers[0])
	took := b.waitJS(killed+" shown down", fmt.Sprintf(`document.querySelector('table.binders tr[data-binder=%s]')?.dataset.state === 'down'`, jsString(killed)), 5*time.Second)
	t.Logf("the killed follower %s was shown down %s after its SIGKILL", killed, took.Round(time.Millisecond))
	b.shot("cluster-follower-down")
	b.assertNoConsoleErrors("the cluster view", unauthorized)

	// A phone-width window: nothing wider than the screen.
	b.do("phone width", chromedp.EmulateViewport(390, 844))
	b.goTo("#/services/echo", "Services")
	b.waitJS("echo's instances", `document.querySelectorAll('table.instances tbody tr').length === 2`, 5*time.Second)
	assert.LessOrEqual(t, evalIn[int](b, `document.documentElement.scrollWidth`), 390, "no horizontal scrolling at 390 px")
	b.shot("services-phone")
	b.do("desktop width", chromedp.EmulateViewport(1280, 900))
	b.assertNoConsoleErrors("every view", unauthorized)

	// The page on the other follower, whose binder then refuses reads for
	// a while (the leader stalls: no contact, 503 stale): the page keeps
	// what it showed, says why in the banner, and recovers by itself.
	page = c.nodes[followers[1]].url()
	b.do("open the UI on the other follower", chromedp.Navigate(page+"/ui/#/services"))
	b.waitJS("the services table", `document.querySelectorAll('table.types tbody tr').length === 1`, 10*time.Second)
	c.pause(lead)
	waitFor(t, 10*time.Second, "the follower to refuse reads", func() (bool, string) {
		var e wire.Error
		code, _ := getJSON(page+"/v1/services", &e)
		return code == http.StatusServiceUnavailable && e.Code == wire.CodeStale, fmt.Sprint(code, e)
	})
	b.goTo("#/changes", "Changes") // a fresh query, rather than waiting out the pending one
	b.goTo("#/services", "Services")
	b.waitJS("the banner", `!document.getElementById('banner').hidden &&
		document.getElementById('banner').textContent.includes('refuses reads for now (stale)')`, 5*time.Second)
	assert.Equal(t, 1, evalIn[int](b, `document.querySelectorAll('table.types tbody tr').length`), "the last answer stays on screen")
	b.shot("binder-stale")
	c.resume(lead)
	b.waitJS("the banner to go", `document.getElementById('banner').hidden`, 15*time.Second)

	// That binder stops answering: the banner says so.
	c.kill(followers[1])
	b.waitJS("the banner", `!document.getElementById('banner').hidden &&
		document.getElementById('banner').textContent.includes('not answering')`, 10*time.Second)
	b.shot("binder-down")
	// The browser logs the failed requests (503, refused connections); the
	// page itself logs nothing.
	assert.Empty(t, b.errors(true), "the page's own console errors")
}

// TestUIOverTLSWithAuthReads: on a TLS cluster (`lieur dev --tls`) whose
// reads need a token, the page loads over HTTPS, asks for a token, and
// once given one lists the services and the cluster.
func TestUIOverTLSWithAuthReads(t *testing.T) {
	if _, why := findChromium(); why != "" {
		t.Skip(why)
	}
	dir := t.TempDir()
	file := filepath.Join(dir, "tokens")
	require.NoError(t, os.WriteFile(file, []byte(tokCluster+" cluster\n"+tokRegister+" register\n"+tokRead+" read\n"), 0o600))
	d := startDev(t, "--nodes", "3", "--tls", "--data-dir", filepath.Join(dir, "dev"),
		"--agent-flag=--token-file="+file, "--agent-flag=--auth-reads")
	waitFor(t, 30*time.Second, "dev to start 3 agents", func() (bool, string) {
		d.mu.Lock()
		defer d.mu.Unlock()
		return len(d.binders) == 3 && len(d.pids) == 3, d.out.String()
	})
	binders := strings.Join(d.binders, ",")
	ca := filepath.Join(dir, "dev", "tls", "ca.pem")
	waitFor(t, 30*time.Second, "the TLS cluster to take a registration", func() (bool, string) {
		r := runBinary(t, nil, lieurBin, "register", "--binders", binders, "--ca", ca, "--token", tokRegister,
			"--type", "echo", "--address", "127.0.0.1", "--port", "5000")
		return r.code == 0, r.stderr
	})

	// The development CA is not in the browser's store: the test accepts
	// the certificate as a user who trusts the CA would.
	b := newBrowser(t, chromedp.IgnoreCertErrors)
	require.True(t, strings.HasPrefix(d.binders[0], "https://"))
	b.do("open the UI", chromedp.Navigate(d.binders[0]+"/ui/"))
	b.waitJS("the token dialog (reads need a token)", `document.getElementById('token-dialog').open`, 10*time.Second)
	b.do("enter a read token", chromedp.SendKeys(chromedp.ID("token-input"), tokRead+kb.Enter))
	b.waitJS("the services", `document.querySelector('table.types tr[data-type=echo]')`, 10*time.Second)
	b.goTo("#/cluster", "Cluster")
	b.waitJS("three binders", `document.querySelectorAll('table.binders tbody tr').length === 3 && !!document.getElementById('leader')`, 10*time.Second)
	b.shot("cluster-tls")
	// The 401 that asked for the token is the browser's to log; the page
	// itself logs nothing.
	assert.Empty(t, b.errors(true), "the page's own console errors")
}

// TestUIOffIsA404: --ui=false leaves /ui/ an unknown path of the API.
func TestUIOffIsA404(t *testing.T) {
	on := startCluster(t, 1)
	resp, err := httpc.Get(on.nodes[0].url() + "/ui/")
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Contains(t, resp.Header.Get("Content-Security-Policy"), "default-src 'none'")

	off := startCluster(t, 1, "--ui=false")
	var e wire.Error
	code, err := getJSON(off.nodes[0].url()+"/ui/", &e)
	require.NoError(t, err)
	assert.Equal(t, http.StatusNotFound, code)
	assert.Equal(t, "no such endpoint: GET /ui/", e.Error)
}

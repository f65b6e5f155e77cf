package httpapi

import (
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// httpMetrics count requests and time them per route pattern (never per
// raw path, so ids and types do not explode the series).
type httpMetrics struct {
	requests *prometheus.CounterVec
	seconds  *prometheus.HistogramVec
}

func newHTTPMetrics() *httpMetrics {
	return &httpMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "lieur_http_requests_total", Help: "HTTP requests by route and status code.",
		}, []string{"route", "code"}),
		seconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "lieur_http_request_seconds", Help: "HTTP request latency by route.",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 60, 300},
		}, []string{"route"}),
	}
}

// statusWriter remembers the status a handler wrote.
type statusWriter struct {
	http.ResponseWriter
	code int
}

func (w *statusWriter) WriteHeader(code int) {
	w.code = code
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// routeMetrics are one route's instruments, looked up once at start-up;
// the common 200 counter is kept at hand.
type routeMetrics struct {
	m       *httpMetrics
	route   string
	ok      prometheus.Counter
	seconds prometheus.Observer
}

func (m *httpMetrics) route(route string) *routeMetrics {
	return &routeMetrics{m: m, route: route, ok: m.requests.WithLabelValues(route, "200"), seconds: m.seconds.WithLabelValues(route)}
}

func (r *routeMetrics) observe(code int, start time.Time) {
	if code == http.StatusOK {
		r.ok.Inc()
	} else {
		r.m.requests.WithLabelValues(r.route, strconv.Itoa(code)).Inc()
	}
	r.seconds.Observe(time.Since(start).Seconds())
}

// MetricsHandler serves the registry in the Prometheus text format.
func MetricsHandler(reg *prometheus.Registry) http.Handler {
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg})
}

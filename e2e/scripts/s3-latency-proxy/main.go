// Command s3-latency-proxy is an HTTP reverse proxy that delays every request before forwarding it,
// so a local S3 server (s3s-fs) answers with the latency of a real one. The bench
// (e2e/scripts/bench.sh, system floe-cluster-s3lat) puts it between the Floe agents and s3s-fs.
//
//	s3-latency-proxy --listen 127.0.0.1:19001 --upstream http://127.0.0.1:19000 \
//	    [--median 20ms] [--p99 100ms] [--max 1s] [--seed 1] [--pid-file FILE]
//
// Each delay is drawn from a log-normal distribution with the given median and 99th percentile
// (S3 Standard's first-byte latency is roughly that shape: about 20 ms typical, 100 ms at p99),
// capped at --max. The generator is seeded (--seed, fixed by default): every run draws the same
// sequence of delays.
// Bodies stream through in both directions; nothing is buffered whole.
//
// GET /__proxy/stats answers {"requests":N,"delay_ms_p50":..,"delay_ms_p99":..} over the delays
// actually applied. No S3 request can collide with it: "__proxy" is not a valid bucket name.
//
// SIGTERM or SIGINT stops it cleanly (in-flight requests get a few seconds to finish).
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// The standard normal distribution's 99th percentile: ln(p99 / median) = sigma * z99.
const z99 = 2.3263478740408408

// statsPath is the proxy's own endpoint; every other path is forwarded.
const statsPath = "/__proxy/stats"

// sampler draws the delays and keeps every one applied, for the stats endpoint. One mutex guards
// both: the generator is not safe for concurrent use, and a bench's request rate is far below what
// a mutex can serve.
type sampler struct {
	median  time.Duration
	sigma   float64
	limit   time.Duration
	mu      sync.Mutex
	rng     *rand.Rand
	applied []time.Duration
}

func newSampler(median, p99, limit time.Duration, seed uint64) (*sampler, error) {
	if median <= 0 {
		return nil, fmt.Errorf("--median must be positive (got %v)", median)
	}
	if p99 < median {
		return nil, fmt.Errorf("--p99 (%v) must be at least --median (%v)", p99, median)
	}
	if limit < median {
		return nil, fmt.Errorf("--max (%v) must be at least --median (%v)", limit, median)
	}
	return &sampler{
		median: median,
		sigma:  math.Log(float64(p99)/float64(median)) / z99,
		limit:  limit,
		rng:    rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
	}, nil
}

// next draws one delay: median * exp(sigma * Z), Z standard normal, capped at limit (--max).
func (s *sampler) next() time.Duration {
	s.mu.Lock()
	z := s.rng.NormFloat64()
	s.mu.Unlock()
	delay := float64(s.median) * math.Exp(s.sigma*z)
	if delay >= float64(s.limit) {
		return s.limit
	}
	return time.Duration(delay)
}

func (s *sampler) record(delay time.Duration) {
	s.mu.Lock()
	s.applied = append(s.applied, delay)
	s.mu.Unlock()
}

type stats struct {
	Requests   int     `json:"requests"`
	DelayMsP50 float64 `json:"delay_ms_p50"`
	DelayMsP99 float64 `json:"delay_ms_p99"`
}

func (s *sampler) stats() stats {
	s.mu.Lock()
	applied := slices.Clone(s.applied)
	s.mu.Unlock()
	slices.Sort(applied)
	return stats{Requests: len(applied), DelayMsP50: quantileMs(applied, 0.50), DelayMsP99: quantileMs(applied, 0.99)}
}

// quantileMs is the nearest-rank q-quantile of sorted delays, in milliseconds (0 when empty),
// rounded to microseconds.
func quantileMs(sorted []time.Duration, q float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(math.Ceil(q*float64(len(sorted)))) - 1
	rank = min(max(rank, 0), len(sorted)-1)
	return math.Round(float64(sorted[rank])/float64(time.Microsecond)) / 1000
}

// newHandler serves the stats endpoint and forwards everything else to upstream after a delay.
func newHandler(upstream *url.URL, s *sampler) http.Handler {
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.Proxy = nil // loopback to loopback: never through an HTTP(S)_PROXY
	// Without this the transport would add Accept-Encoding: gzip and unpack the answer itself:
	// the proxy must pass the client's request and the server's answer through as they are.
	transport.DisableCompression = true
	// Three agents issue many GETs at once (a catch-up read): keep their connections to s3s-fs
	// open rather than closing all but two after each burst (the default per host).
	transport.MaxIdleConnsPerHost = 1024
	proxy := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			// SigV4 signs the Host header and the path (and the query): the client (object_store)
			// signed "host: <this proxy's address>", the address it was given as AWS_ENDPOINT. So
			// the Host header goes to s3s-fs untouched (r.Out.Host = r.In.Host, which is what
			// Rewrite starts from; SetURL would reset it to the upstream's address and every
			// signature would fail). s3s-fs checks the signature against the Host header it
			// receives and does not compare it with its own address (without --domain it takes
			// every request as path-style), so it accepts the proxy's host name.
			r.Out.URL.Scheme = upstream.Scheme
			r.Out.URL.Host = upstream.Host
			r.Out.Host = r.In.Host
			// The target exactly as the client sent it: ReverseProxy drops query parameters it
			// cannot parse, and Go re-escapes a path whose escaping it does not consider canonical;
			// either would change the signed canonical request.
			path, query, _ := strings.Cut(r.In.RequestURI, "?")
			r.Out.URL.RawQuery = query
			if strings.HasPrefix(path, "/") && !strings.HasPrefix(path, "//") {
				r.Out.URL.Opaque = path // sent verbatim as the request line's path
			}
		},
		Transport: transport,
		// Flush every write: the client gets each byte as soon as s3s-fs sends it (a streaming
		// GET), as from S3 itself, not when a buffer fills.
		FlushInterval: -1,
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == statsPath && r.Method == http.MethodGet {
			w.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(s.stats())
			return
		}
		delay := s.next()
		timer := time.NewTimer(delay)
		select {
		case <-timer.C:
		case <-r.Context().Done(): // the client gave up: nothing to forward
			timer.Stop()
			return
		}
		s.record(delay)
		proxy.ServeHTTP(w, r)
	})
}

// checkLoopback refuses a listen address off the loopback interface: a bench tool with no access
// control of its own (the stats endpoint answers anyone) has no business beyond this machine.
func checkLoopback(listen string) error {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return fmt.Errorf("--listen %q: %v", listen, err)
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		return fmt.Errorf("--listen %q: bad port", listen)
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return fmt.Errorf("--listen %q: not a loopback address (e.g. 127.0.0.1:19001)", listen)
	}
	return nil
}

func run() error {
	listen := flag.String("listen", "", "loopback address to listen on, e.g. 127.0.0.1:19001 (required)")
	upstreamFlag := flag.String("upstream", "", "S3 server to forward to, e.g. http://127.0.0.1:19000 (required)")
	median := flag.Duration("median", 20*time.Millisecond, "median delay added to each request")
	p99 := flag.Duration("p99", 100*time.Millisecond, "99th percentile of the delay")
	maxDelay := flag.Duration("max", time.Second, "cap on any one delay")
	seed := flag.Uint64("seed", 1, "seed of the delay generator (fixed by default: runs are repeatable)")
	pidFile := flag.String("pid-file", "", "write the process ID to this file")
	flag.Parse()
	if flag.NArg() != 0 {
		return fmt.Errorf("unexpected arguments %q", flag.Args())
	}
	if *listen == "" || *upstreamFlag == "" {
		return errors.New("--listen and --upstream are required")
	}
	if err := checkLoopback(*listen); err != nil {
		return err
	}
	upstream, err := url.Parse(*upstreamFlag)
	if err != nil || (upstream.Scheme != "http" && upstream.Scheme != "https") || upstream.Host == "" ||
		(upstream.Path != "" && upstream.Path != "/") || upstream.RawQuery != "" {
		return fmt.Errorf("--upstream %q: expected http://HOST:PORT", *upstreamFlag)
	}
	s, err := newSampler(*median, *p99, *maxDelay, *seed)
	if err != nil {
		return err
	}

	// Bound before the PID file and the log line: whoever waits for either can connect at once.
	listener, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	if *pidFile != "" {
		if err := os.WriteFile(*pidFile, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644); err != nil {
			return err
		}
		defer os.Remove(*pidFile)
	}
	fmt.Fprintf(os.Stderr, "s3-latency-proxy: listening on %s, upstream %s, median %v, p99 %v, max %v, seed %d\n",
		listener.Addr(), upstream, *median, *p99, *maxDelay, *seed)

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	server := &http.Server{Handler: newHandler(upstream, s), ReadHeaderTimeout: 30 * time.Second}
	served := make(chan error, 1)
	go func() { served <- server.Serve(listener) }()
	select {
	case err := <-served:
		return err
	case <-ctx.Done():
	}
	shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := server.Shutdown(shutdown); err != nil {
		_ = server.Close() // in-flight requests past the grace period are cut
	}
	result := s.stats()
	fmt.Fprintf(os.Stderr, "s3-latency-proxy: stopped after %d requests (delay p50 %.3f ms, p99 %.3f ms)\n",
		result.Requests, result.DelayMsP50, result.DelayMsP99)
	return nil
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintf(os.Stderr, "s3-latency-proxy: %v\n", err)
		os.Exit(2)
	}
}

package main

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/json"
	"errors"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"
)

// With S3_LATENCY_PROXY_MAIN=1 the test binary is the proxy itself (TestRunsAndStopsOnSIGTERM).
func TestMain(m *testing.M) {
	if os.Getenv("S3_LATENCY_PROXY_MAIN") == "1" {
		// The proxy's own flags follow "--" (before it, the test binary would take them for its own).
		os.Args = append([]string{os.Args[0]}, os.Args[slices.Index(os.Args, "--")+1:]...)
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// The shape the bench asks for: median 20 ms, p99 100 ms.
func TestDelaysHaveTheGivenMedianAndP99(t *testing.T) {
	s, err := newSampler(20*time.Millisecond, 100*time.Millisecond, time.Second, 1)
	if err != nil {
		t.Fatal(err)
	}
	draws := make([]time.Duration, 20000)
	for i := range draws {
		draws[i] = s.next()
	}
	slices.Sort(draws)
	within := func(name string, got, want time.Duration, tolerance float64) {
		t.Helper()
		if math.Abs(float64(got-want)) > tolerance*float64(want) {
			t.Errorf("%s of 20,000 draws is %v, want %v within %.0f%%", name, got, want, tolerance*100)
		}
	}
	within("median", draws[len(draws)/2], 20*time.Millisecond, 0.10)
	within("p99", draws[len(draws)*99/100], 100*time.Millisecond, 0.15)
	if draws[len(draws)-1] > time.Second {
		t.Errorf("a draw of %v exceeds the 1s cap", draws[len(draws)-1])
	}
}

func TestDelaysAreCappedAndRepeatable(t *testing.T) {
	a, _ := newSampler(100*time.Millisecond, time.Second, 150*time.Millisecond, 7)
	b, _ := newSampler(100*time.Millisecond, time.Second, 150*time.Millisecond, 7)
	for i := 0; i < 1000; i++ {
		x, y := a.next(), b.next()
		if x != y {
			t.Fatalf("draw %d differs between two samplers with one seed: %v, %v", i, x, y)
		}
		if x > 150*time.Millisecond {
			t.Fatalf("draw %d is %v, above the 150ms cap", i, x)
		}
	}
	if _, err := newSampler(20*time.Millisecond, 10*time.Millisecond, time.Second, 1); err == nil {
		t.Error("a p99 below the median was accepted")
	}
}

// seen is what the upstream received, request by request.
type seen struct {
	method, requestURI, host, rangeHeader string
	body                                  []byte
}

// A tiny S3 stand-in: PUT stores the body under the path, GET serves it (ranges included).
func fakeS3(t *testing.T) (*httptest.Server, func() []seen) {
	var mu sync.Mutex
	var requests []seen
	objects := map[string][]byte{}
	server := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			t.Errorf("upstream: reading the body: %v", err)
		}
		mu.Lock()
		requests = append(requests, seen{r.Method, r.RequestURI, r.Host, r.Header.Get("Range"), body})
		mu.Unlock()
		switch r.Method {
		case http.MethodPut:
			mu.Lock()
			objects[r.URL.EscapedPath()] = body
			mu.Unlock()
			w.Header().Set("ETag", `"1"`)
		case http.MethodGet:
			mu.Lock()
			object, ok := objects[r.URL.EscapedPath()]
			mu.Unlock()
			if !ok {
				http.NotFound(w, r)
				return
			}
			http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(object))
		}
	}))
	t.Cleanup(server.Close)
	return server, func() []seen {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(requests)
	}
}

// A proxy in front of upstream with millisecond delays (the tests check forwarding, not timing).
func fastProxy(t *testing.T, upstream string) (*httptest.Server, *sampler) {
	target, err := url.Parse(upstream)
	if err != nil {
		t.Fatal(err)
	}
	s, err := newSampler(time.Millisecond, 2*time.Millisecond, 10*time.Millisecond, 1)
	if err != nil {
		t.Fatal(err)
	}
	proxy := httptest.NewServer(newHandler(target, s))
	t.Cleanup(proxy.Close)
	return proxy, s
}

func randomBytes(t *testing.T, n int) []byte {
	data := make([]byte, n)
	if _, err := rand.Read(data); err != nil {
		t.Fatal(err)
	}
	return data
}

func TestForwardsAPutAndARangedGetUnchanged(t *testing.T) {
	upstream, requests := fakeS3(t)
	proxy, _ := fastProxy(t, upstream.URL)
	// A key and a query with escapes Go would write differently: they must reach the server as
	// sent, or its SigV4 check fails. The Host header is the one the client signed, neither the
	// proxy's nor the upstream's address.
	const target = "/floe-bench/bench/segments/a%3Db%2Bc%20d.seg?x-id=PutObject&tag=a%2Fb%3Bc"
	const host = "signed-host.test:9000"
	object := randomBytes(t, 3<<20)

	put, err := http.NewRequest(http.MethodPut, proxy.URL+target, bytes.NewReader(object))
	if err != nil {
		t.Fatal(err)
	}
	put.Host = host
	response, err := http.DefaultClient.Do(put)
	if err != nil {
		t.Fatal(err)
	}
	response.Body.Close()
	if response.StatusCode != http.StatusOK || response.Header.Get("ETag") != `"1"` {
		t.Fatalf("PUT answered %s, ETag %q", response.Status, response.Header.Get("ETag"))
	}

	get, err := http.NewRequest(http.MethodGet, proxy.URL+target, nil)
	if err != nil {
		t.Fatal(err)
	}
	get.Host = host
	get.Header.Set("Range", "bytes=1000-2000999")
	response, err = http.DefaultClient.Do(get)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(response.Body)
	response.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	if response.StatusCode != http.StatusPartialContent {
		t.Fatalf("ranged GET answered %s", response.Status)
	}
	if !bytes.Equal(got, object[1000:2001000]) {
		t.Fatalf("ranged GET returned %d bytes that differ from the object's range", len(got))
	}

	// A path sent unescaped ('|' and '^' are not canonical in Go's eyes, which would escape them)
	// also reaches the upstream byte for byte.
	const raw = "/floe-bench/raw|key^1"
	head, err := http.NewRequest(http.MethodHead, proxy.URL, nil)
	if err != nil {
		t.Fatal(err)
	}
	head.URL.Opaque = raw
	head.Host = host
	response, err = http.DefaultClient.Do(head)
	if err != nil {
		t.Fatal(err)
	}
	response.Body.Close()

	all := requests()
	if len(all) != 3 {
		t.Fatalf("upstream saw %d requests, want 3", len(all))
	}
	for i, want := range []seen{{http.MethodPut, target, host, "", object}, {http.MethodGet, target, host, "bytes=1000-2000999", nil},
		{http.MethodHead, raw, host, "", nil}} {
		g := all[i]
		if g.method != want.method || g.requestURI != want.requestURI || g.host != want.host || g.rangeHeader != want.rangeHeader {
			t.Errorf("upstream request %d: %s %s Host %q Range %q, want %s %s Host %q Range %q", i,
				g.method, g.requestURI, g.host, g.rangeHeader, want.method, want.requestURI, want.host, want.rangeHeader)
		}
		if !bytes.Equal(g.body, want.body) {
			t.Errorf("upstream request %d: body of %d bytes differs from the %d sent", i, len(g.body), len(want.body))
		}
	}
}

// Neither body is held back until it is complete: the upstream sees the first half of a request
// body before the client has sent the rest, and the client sees the first half of an answer
// before the upstream has written the rest.
func TestStreamsBodiesBothWays(t *testing.T) {
	const half = 256 << 10
	firstHalfIn := make(chan struct{})
	firstHalfOut := make(chan struct{})
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, err := io.ReadFull(r.Body, make([]byte, half)); err != nil {
			t.Errorf("upstream: reading the first half: %v", err)
			return
		}
		close(firstHalfIn)
		rest, _ := io.ReadAll(r.Body)
		if len(rest) != half {
			t.Errorf("upstream: second half of %d bytes, want %d", len(rest), half)
		}
		w.Header().Set("Content-Length", strconv.Itoa(2*half))
		w.Write(make([]byte, half))
		w.(http.Flusher).Flush()
		select {
		case <-firstHalfOut:
		case <-time.After(10 * time.Second):
			t.Error("upstream: the client never saw the first half of the answer: the proxy buffers it")
			return
		}
		w.Write(make([]byte, half))
	}))
	defer upstream.Close()
	proxy, _ := fastProxy(t, upstream.URL)

	reader, writer := io.Pipe()
	go func() {
		writer.Write(make([]byte, half))
		select {
		case <-firstHalfIn:
			writer.Write(make([]byte, half))
			writer.Close()
		case <-time.After(10 * time.Second):
			writer.CloseWithError(io.ErrUnexpectedEOF)
			t.Error("the upstream never saw the first half of the request body: the proxy buffers it")
		}
	}()
	response, err := http.Post(proxy.URL+"/bucket/key", "application/octet-stream", reader)
	if err != nil {
		t.Fatal(err)
	}
	defer response.Body.Close()
	if _, err := io.ReadFull(response.Body, make([]byte, half)); err != nil {
		t.Fatalf("reading the first half of the answer: %v", err)
	}
	close(firstHalfOut)
	rest, err := io.ReadAll(response.Body)
	if err != nil || len(rest) != half {
		t.Fatalf("second half of the answer: %d bytes, %v", len(rest), err)
	}
}

func TestStatsCountTheForwardedRequests(t *testing.T) {
	upstream, _ := fakeS3(t)
	proxy, _ := fastProxy(t, upstream.URL)
	readStats := func() stats {
		t.Helper()
		response, err := http.Get(proxy.URL + statsPath)
		if err != nil {
			t.Fatal(err)
		}
		defer response.Body.Close()
		var result stats
		if err := json.NewDecoder(response.Body).Decode(&result); err != nil {
			t.Fatal(err)
		}
		return result
	}
	if got := readStats(); got.Requests != 0 {
		t.Fatalf("stats before any request: %+v", got)
	}
	for i := 0; i < 5; i++ {
		response, err := http.Get(proxy.URL + "/floe-bench/missing")
		if err != nil {
			t.Fatal(err)
		}
		response.Body.Close()
		if response.StatusCode != http.StatusNotFound {
			t.Fatalf("GET of a missing object answered %s, want the upstream's 404", response.Status)
		}
	}
	got := readStats()
	if got.Requests != 5 {
		t.Errorf("stats count %d requests, want 5 (the stats requests themselves are not counted)", got.Requests)
	}
	if got.DelayMsP50 <= 0 || got.DelayMsP50 > got.DelayMsP99 || got.DelayMsP99 > 10 {
		t.Errorf("stats delays p50 %v ms, p99 %v ms: want 0 < p50 <= p99 <= 10 (the cap)", got.DelayMsP50, got.DelayMsP99)
	}
}

func TestListensOnLoopbackOnly(t *testing.T) {
	for _, listen := range []string{"127.0.0.1:19001", "[::1]:19001", "localhost:0"} {
		if err := checkLoopback(listen); err != nil {
			t.Errorf("%s refused: %v", listen, err)
		}
	}
	for _, listen := range []string{"0.0.0.0:19001", ":19001", "192.0.2.1:19001", "127.0.0.1"} {
		if checkLoopback(listen) == nil {
			t.Errorf("%s accepted", listen)
		}
	}
}

// The binary as the bench runs it: the start-up line, the PID file, and a clean exit on SIGTERM.
func TestRunsAndStopsOnSIGTERM(t *testing.T) {
	upstream, _ := fakeS3(t)
	pidFile := filepath.Join(t.TempDir(), "proxy.pid")
	command := exec.Command(os.Args[0], "--", "--listen", "127.0.0.1:0", "--upstream", upstream.URL,
		"--median", "1ms", "--p99", "2ms", "--pid-file", pidFile)
	command.Env = append(os.Environ(), "S3_LATENCY_PROXY_MAIN=1")
	stderr, err := command.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := command.Start(); err != nil {
		t.Fatal(err)
	}
	defer command.Process.Kill()
	lines := bufio.NewScanner(stderr)
	if !lines.Scan() {
		t.Fatalf("no start-up line: %v", lines.Err())
	}
	started := regexp.MustCompile(`^s3-latency-proxy: listening on (127\.0\.0\.1:\d+), upstream (\S+), median 1ms, p99 2ms`).
		FindStringSubmatch(lines.Text())
	if started == nil || started[2] != upstream.URL {
		t.Fatalf("start-up line %q", lines.Text())
	}
	pid, err := os.ReadFile(pidFile)
	if err != nil || string(pid) != strconv.Itoa(command.Process.Pid)+"\n" {
		t.Fatalf("PID file holds %q (%v), want %d", pid, err, command.Process.Pid)
	}
	response, err := http.Get("http://" + started[1] + "/floe-bench/missing")
	if err != nil {
		t.Fatal(err)
	}
	response.Body.Close()
	if err := command.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	go io.Copy(io.Discard, stderr)
	if err := command.Wait(); err != nil {
		t.Fatalf("exit after SIGTERM: %v", err)
	}
	if _, err := os.Stat(pidFile); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("PID file left behind after a clean stop (%v)", err)
	}
}

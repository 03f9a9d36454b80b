// Command floe-e2e-franz-go drives a Kafka-compatible server with franz-go (kgo and kadm) and
// reports what happened as verifiable-client events (e2e/README.md); the Rust suites decide.
//
//	floe-e2e-franz-go roundtrip   --bootstrap H:P --topic T [--partitions 12] --records N
//	floe-e2e-franz-go admin       --bootstrap H:P --topic T
//	floe-e2e-franz-go idempotence --bootstrap H:P --topic T [--partitions 12] --records N
//	floe-e2e-franz-go denied      --bootstrap H:P --topic T --group G --new-topic N
//	floe-e2e-franz-go transactions --bootstrap H:P --topic T [--partitions 12] --records N --transactional-id X
//	floe-e2e-franz-go group-consume --bootstrap H:P --topic T --group G [--members 3] --records C
//	floe-e2e-franz-go read        --bootstrap H:P --topic T
//
// Every mode also takes --tls-ca-file CA.pem (TLS, trusting that CA) and --sasl-mechanism
// PLAIN|SCRAM-SHA-256|SCRAM-SHA-512 with --sasl-user and --sasl-password.
//
// Each mode prints startup_complete, the events of what it did, and shutdown_complete on stdout and
// exits 0; a step that cannot go on (no client, no topic) ends it with "FAIL franz-go <mode>: ..."
// on stderr and exit 1 (2 for a usage error). See README.md.
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"
)

const (
	clientID = "floe-e2e-franz-go"
	// clientName is what the records' h-client header and startup_complete carry.
	clientName = "franz-go"
)

// options are the command-line flags every mode shares.
type options struct {
	bootstrap  string
	topic      string
	partitions int
	records    int
	// group and newTopic are the denied mode's group and topic to create; group is also the
	// group-consume mode's group.
	group    string
	newTopic string
	// members is the group-consume mode's number of group members.
	members int
	// transactionalID is the transactions mode's transactional id.
	transactionalID string
	// security holds the TLS and SASL options of --tls-ca-file and --sasl-*.
	security []kgo.Opt
}

func main() {
	if len(os.Args) < 2 {
		usage("missing mode")
	}
	mode := os.Args[1]
	set := flag.NewFlagSet(mode, flag.ContinueOnError)
	var opts options
	set.StringVar(&opts.bootstrap, "bootstrap", "", "HOST:PORT of the server")
	set.StringVar(&opts.topic, "topic", "", "topic to create and use (must not exist yet)")
	set.IntVar(&opts.partitions, "partitions", 12, "partitions of the topic")
	set.IntVar(&opts.records, "records", 10000, "records to produce")
	set.StringVar(&opts.group, "group", "", "consumer group (denied, group-consume)")
	set.IntVar(&opts.members, "members", 3, "group members (group-consume)")
	set.StringVar(&opts.newTopic, "new-topic", "", "topic to create (denied)")
	set.StringVar(&opts.transactionalID, "transactional-id", "", "transactional id of the producer (transactions)")
	tlsCA := set.String("tls-ca-file", "", "connect with TLS, trusting this CA (PEM)")
	mechanism := set.String("sasl-mechanism", "", "PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512")
	user := set.String("sasl-user", "", "SASL user")
	password := set.String("sasl-password", "", "SASL password")
	if err := set.Parse(os.Args[2:]); err != nil {
		usage(err.Error())
	}
	security, err := securityOptions(*tlsCA, *mechanism, *user, *password)
	if err != nil {
		usage(err.Error())
	}
	opts.security = security
	if opts.bootstrap == "" || opts.topic == "" || opts.partitions < 1 || opts.records < 0 {
		usage("--bootstrap and --topic are required; --partitions >= 1; --records >= 0")
	}
	if mode == "denied" && (opts.group == "" || opts.newTopic == "") {
		usage("denied needs --group and --new-topic")
	}
	if mode == "transactions" && opts.transactionalID == "" {
		usage("transactions needs --transactional-id")
	}
	if mode == "group-consume" && (opts.group == "" || opts.members < 1) {
		usage("group-consume needs --group and --members >= 1")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	emit("startup_complete", map[string]any{"client": clientName})

	switch mode {
	case "roundtrip":
		err = roundtrip(ctx, opts)
	case "admin":
		err = admin(ctx, opts)
	case "idempotence":
		err = idempotence(ctx, opts)
	case "denied":
		err = denied(ctx, opts)
	case "transactions":
		err = transactions(ctx, opts)
	case "group-consume":
		err = groupConsume(ctx, opts)
	case "read":
		err = read(ctx, opts)
	default:
		usage("unknown mode " + mode)
	}
	if err != nil {
		flushEvents()
		fmt.Fprintf(os.Stderr, "FAIL franz-go %s: %v\n", mode, err)
		os.Exit(1)
	}
	emit("shutdown_complete", map[string]any{})
	flushEvents()
}

func usage(reason string) {
	fmt.Fprintf(os.Stderr, "usage error: %s\nusage: floe-e2e-franz-go roundtrip|admin|idempotence|denied|transactions|group-consume|read --bootstrap HOST:PORT --topic T [--partitions P] [--records N] [--group G] [--new-topic N] [--transactional-id X] [--members M]\n", reason)
	os.Exit(2)
}

// securityOptions turns --tls-ca-file and --sasl-* into client options.
func securityOptions(caFile, mechanism, user, password string) ([]kgo.Opt, error) {
	var opts []kgo.Opt
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, err
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("no certificate in %s", caFile)
		}
		opts = append(opts, kgo.DialTLSConfig(&tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}))
	}
	var chosen sasl.Mechanism
	switch mechanism {
	case "":
	case "PLAIN":
		chosen = plain.Auth{User: user, Pass: password}.AsMechanism()
	case "SCRAM-SHA-256":
		chosen = scram.Auth{User: user, Pass: password}.AsSha256Mechanism()
	case "SCRAM-SHA-512":
		chosen = scram.Auth{User: user, Pass: password}.AsSha512Mechanism()
	default:
		return nil, fmt.Errorf("unknown --sasl-mechanism %q", mechanism)
	}
	if chosen != nil {
		opts = append(opts, kgo.SASL(chosen))
	}
	return opts, nil
}

func newClient(opts options, extra ...kgo.Opt) (*kgo.Client, error) {
	base := append([]kgo.Opt{kgo.SeedBrokers(opts.bootstrap), kgo.ClientID(clientID)}, opts.security...)
	if level := os.Getenv("FRANZ_GO_LOG"); level != "" {
		// FRANZ_GO_LOG=debug|info|warn: the client's own log on stderr, to diagnose a failure.
		logLevel := map[string]kgo.LogLevel{"debug": kgo.LogLevelDebug, "info": kgo.LogLevelInfo, "warn": kgo.LogLevelWarn}[level]
		base = append(base, kgo.WithLogger(kgo.BasicLogger(os.Stderr, logLevel, nil)))
	}
	return kgo.NewClient(append(base, extra...)...)
}

// createTopic creates the topic (RF 1) with kadm and fails if it already exists: every check
// assumes a fresh topic.
func createTopic(ctx context.Context, opts options, partitions int32, configs map[string]*string) error {
	client, err := newClient(opts)
	if err != nil {
		return err
	}
	defer client.Close()
	created, err := kadm.NewClient(client).CreateTopic(ctx, partitions, 1, configs, opts.topic)
	if err != nil {
		return fmt.Errorf("CreateTopics(%s): %w (%s)", opts.topic, err, created.ErrMessage)
	}
	if created.NumPartitions != partitions {
		return fmt.Errorf("CreateTopics(%s) answered %d partitions, asked for %d", opts.topic, created.NumPartitions, partitions)
	}
	return nil
}

// isPollDeadline tells a poll's own timeout from a fetch error.
func isPollDeadline(err error) bool {
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled)
}

// waitFor polls check until it returns nil or the deadline passes; it returns the last error.
func waitFor(ctx context.Context, what string, timeout time.Duration, check func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := check()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("%s: still failing after %s: %w", what, timeout, err)
		}
		select {
		case <-ctx.Done():
		case <-time.After(100 * time.Millisecond):
		}
	}
}

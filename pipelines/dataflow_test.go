package pipelines

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/log"
	pipepb "github.com/apache/beam/sdks/v2/go/pkg/beam/model/pipeline_v1"
	"github.com/beamtune/beamtune/dataset"
	"github.com/beamtune/beamtune/transforms"
	"github.com/fsouza/fake-gcs-server/fakestorage"
	df "google.golang.org/api/dataflow/v1b3"
	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"
)

// The Dataflow runner's --dry_run translates the pipeline into the job it
// would submit and logs it instead of submitting it. These tests capture that
// job for real beamtune pipelines and check what a Dataflow worker would get:
// the image, the worker binary, the steps and, only when asked for, a GPU.

const (
	dfBucket   = "beamtune-staging"
	dfStaging  = "gs://" + dfBucket + "/staging"
	dfCPUImage = "europe-west4-docker.pkg.dev/beamtune-test/beamtune/beamtune:cpu-test"
	dfGPUImage = "europe-west4-docker.pkg.dev/beamtune-test/beamtune/beamtune:cuda-test"
	dfGPU      = "worker_accelerator=type:nvidia-l4;count:1;install-nvidia-driver"
)

// captureLog keeps every message Beam logs; the dry run's job is among them.
type captureLog struct {
	mu   sync.Mutex
	msgs []string
}

func (c *captureLog) Log(_ context.Context, _ log.Severity, _ int, msg string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.msgs = append(c.msgs, msg)
}

// dryRunJob is what one dry run described.
type dryRunJob struct {
	job      *df.Job
	raw      string           // the job JSON as the runner logged it
	pipeline *pipepb.Pipeline // the portable pipeline the job points at
	goOpts   map[string]string
}

// offlineGCS points the GCS client the Dataflow runner creates (to check the
// staging bucket's soft-delete policy) at an in-process fake, so the test
// never reaches the network, and returns the fake to check nothing was staged.
func offlineGCS(t *testing.T) *fakestorage.Server {
	t.Helper()
	srv, err := fakestorage.NewServerWithOptions(fakestorage.Options{
		Scheme: "http", Host: "127.0.0.1", Port: 0, PublicHost: "127.0.0.1", Writer: io.Discard,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Stop)
	srv.CreateBucketWithOpts(fakestorage.CreateBucketOpts{Name: dfBucket})
	t.Setenv("STORAGE_EMULATOR_HOST", strings.TrimPrefix(srv.URL(), "http://"))
	return srv
}

// dataflowDryRun sets the Dataflow flags (plus extra), calls runPipeline
// with --dry_run on and returns the job the runner described. Flags and Beam's
// logger are put back afterwards: both are process-wide.
func dataflowDryRun(t *testing.T, extra map[string]string, runPipeline func() error) dryRunJob {
	t.Helper()
	flags := map[string]string{
		"dry_run":          "true",
		"project":          "beamtune-test",
		"region":           "europe-west4",
		"staging_location": dfStaging,
		"temp_location":    "gs://" + dfBucket + "/tmp",
		"environment_type": "DOCKER", // what Dataflow runs; another test may have set LOOPBACK
	}
	for k, v := range extra {
		flags[k] = v
	}
	restore, err := SetBeamFlags(flags)
	if err != nil {
		t.Fatal(err)
	}
	logs := &captureLog{}
	func() {
		defer restore()
		defer log.SetLogger(&log.Structural{}) // Beam's default
		log.SetLogger(logs)
		err = runPipeline()
	}()

	if !errors.Is(err, ErrNotExecuted) {
		t.Fatalf("dry run returned %v, want ErrNotExecuted", err)
	}
	var out dryRunJob
	for _, m := range logs.msgs {
		if strings.HasPrefix(m, "{") {
			var j df.Job
			if json.Unmarshal([]byte(m), &j) == nil && j.ProjectId != "" {
				out.job, out.raw = &j, m
			}
			continue
		}
		var p pipepb.Pipeline
		if prototext.Unmarshal([]byte(m), &p) == nil && len(p.GetComponents().GetTransforms()) > 0 {
			out.pipeline = &p
		}
	}
	if out.job == nil || out.pipeline == nil {
		t.Fatalf("in %d logged messages: job JSON found %v, pipeline found %v", len(logs.msgs), out.job != nil, out.pipeline != nil)
	}
	var opts struct {
		GoOptions struct {
			Options map[string]string `json:"options"`
		} `json:"beam:option:go_options:v1"`
	}
	if err := json.Unmarshal(out.job.Environment.SdkPipelineOptions, &opts); err != nil {
		t.Fatalf("sdkPipelineOptions: %v", err)
	}
	out.goOpts = opts.GoOptions.Options
	return out
}

// checkJob asserts what every beamtune job on Dataflow needs: the image on
// every worker and environment, the staged worker binary, the named steps,
// and the accelerator only when one was asked for.
func checkJob(t *testing.T, j dryRunJob, name, image, workerBin, accelerator string, steps []string) {
	t.Helper()
	job := j.job
	if job.Name != name || job.ProjectId != "beamtune-test" || job.Type != "JOB_TYPE_BATCH" {
		t.Errorf("job %q in %q of type %s, want %q in beamtune-test, batch", job.Name, job.ProjectId, job.Type, name)
	}
	if len(job.Environment.WorkerPools) != 1 {
		t.Fatalf("%d worker pools, want 1", len(job.Environment.WorkerPools))
	}
	pool := job.Environment.WorkerPools[0]
	if pool.WorkerHarnessContainerImage != image {
		t.Errorf("worker image %q, want %q", pool.WorkerHarnessContainerImage, image)
	}
	if len(pool.SdkHarnessContainerImages) == 0 {
		t.Error("no SDK harness container image")
	}
	for _, c := range pool.SdkHarnessContainerImages {
		if c.ContainerImage != image {
			t.Errorf("SDK harness image %q (environment %s), want %q", c.ContainerImage, c.EnvironmentId, image)
		}
	}
	// Every environment of the portable pipeline, not only the job's summary,
	// must name the image: workers start the environment's container.
	for id, env := range j.pipeline.GetComponents().GetEnvironments() {
		var payload pipepb.DockerPayload
		if err := proto.Unmarshal(env.GetPayload(), &payload); err != nil {
			t.Fatalf("environment %s: %v", id, err)
		}
		if payload.GetContainerImage() != image {
			t.Errorf("environment %s runs %q, want %q", id, payload.GetContainerImage(), image)
		}
	}

	// The worker binary: staged as the package named "worker" under
	// --staging_location, from the file --worker_binary named.
	var worker *df.Package
	for _, p := range pool.Packages {
		if p.Name == "worker" {
			worker = p
		}
	}
	if worker == nil || !strings.HasPrefix(worker.Location, dfStaging+"/") {
		t.Errorf("no worker package under %s: %+v", dfStaging, pool.Packages)
	}
	if got := j.goOpts["worker_binary"]; got != workerBin {
		t.Errorf("pipeline option worker_binary = %q, want %q", got, workerBin)
	}

	names := map[string]bool{}
	for _, tr := range j.pipeline.GetComponents().GetTransforms() {
		names[tr.GetUniqueName()] = true
	}
	for _, s := range steps {
		if !names[s] {
			t.Errorf("step %q missing from the pipeline", s)
		}
	}

	if accelerator == "" {
		if len(job.Environment.ServiceOptions) != 0 || strings.Contains(j.raw, "worker_accelerator") {
			t.Errorf("a CPU job asks for an accelerator: service options %q; worker_accelerator in the job: %v",
				job.Environment.ServiceOptions, strings.Contains(j.raw, "worker_accelerator"))
		}
		return
	}
	if len(job.Environment.ServiceOptions) != 1 || job.Environment.ServiceOptions[0] != accelerator {
		t.Errorf("service options %q, want [%q]", job.Environment.ServiceOptions, accelerator)
	}
	// GPUs on Dataflow need Runner v2; the Go SDK turns it on by default.
	if !strings.Contains(strings.Join(job.Environment.Experiments, ","), "use_runner_v2") {
		t.Errorf("experiments %q lack use_runner_v2", job.Environment.Experiments)
	}
}

func fakeWorkerBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "beamtune-linux-amd64")
	if err := os.WriteFile(bin, []byte("not run by a dry run"), 0o755); err != nil {
		t.Fatal(err)
	}
	return bin
}

// TestDataflowDryRunPrepare describes the prepare pipeline as a CPU job.
func TestDataflowDryRunPrepare(t *testing.T) {
	gcs := offlineGCS(t)
	bin := fakeWorkerBinary(t)
	o := DefaultPrepareOptions()
	o.Fields = dataset.Fields{Text: []string{"sentence"}, Label: "label"}
	o.Output = "gs://" + dfBucket + "/datasets/sst2"
	var files []transforms.InputFile
	for split, name := range map[string]string{dataset.SplitTrain: "sst2_train.tsv", dataset.SplitValidation: "sst2_dev.tsv"} {
		path := filepath.Join("..", "testdata", "sample", name)
		f, err := dataset.ParseFormat(o.Format, path)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, transforms.InputFile{Path: path, Parse: dataset.ParseConfig{
			Format: f, Header: true, Fields: o.Fields, Split: split, MaxRecordBytes: o.MaxRecordBytes,
		}})
	}
	plan := transforms.PlanShards(map[string]int64{}, o.ShardBytes)
	p, err := buildPrepare(o, files, plan, strings.Repeat("ab", 32), "gs://"+dfBucket+"/models/m/tokenizer.json", strings.Repeat("0", 64))
	if err != nil {
		t.Fatal(err)
	}
	j := dataflowDryRun(t, map[string]string{
		"job_name":            "beamtune-prepare-dryrun",
		"sdk_container_image": dfCPUImage,
		"worker_binary":       bin,
	}, func() error {
		_, err := run(context.Background(), "dataflow", p)
		return err
	})
	checkJob(t, j, "beamtune-prepare-dryrun", dfCPUImage, bin, "", []string{"Inputs", "WriteShards", "WriteDeadLetter", "WriteManifest"})

	objs, _, err := gcs.ListObjectsWithOptions(dfBucket, fakestorage.ListOptions{})
	if err != nil || len(objs) != 0 {
		t.Errorf("a dry run staged %d objects (%v); it must stage nothing", len(objs), err)
	}
}

// TestDataflowDryRunTrainGPU describes a two-trial training sweep as a GPU job
// through RunTrain itself: ErrNotExecuted must stop it before it reads the
// trials file that a real run would have written.
func TestDataflowDryRunTrainGPU(t *testing.T) {
	offlineGCS(t)
	// The next pipeline of the process must not inherit Dataflow settings.
	restored := []string{"dry_run", "project", "sdk_container_image", "dataflow_service_options", "worker_binary"}
	before := map[string]string{}
	for _, n := range restored {
		before[n] = flagValue(n) + "|" + beam.PipelineOptions.Get(n)
	}
	bin := fakeWorkerBinary(t)
	o := TrainOptions{
		Data: "gs://" + dfBucket + "/datasets/sst2", Init: "gs://" + dfBucket + "/models/minilm",
		Output: "gs://" + dfBucket + "/runs/r1", Device: "cuda", Runner: "dataflow",
		Sweep: map[string][]string{"lr": {"5e-5", "1e-4"}},
	}
	j := dataflowDryRun(t, map[string]string{
		"job_name":                 "beamtune-train-dryrun",
		"sdk_container_image":      dfGPUImage,
		"worker_binary":            bin,
		"dataflow_service_options": dfGPU,
	}, func() error {
		res, err := RunTrain(context.Background(), o)
		if res != nil {
			t.Errorf("RunTrain returned a result from a job that never ran: %+v", res)
		}
		return err
	})
	checkJob(t, j, "beamtune-train-dryrun", dfGPUImage, bin, dfGPU, []string{"Trials", "Train", "SelectAndPublish"})

	for _, n := range restored {
		if got := flagValue(n) + "|" + beam.PipelineOptions.Get(n); got != before[n] {
			t.Errorf("--%s (flag|pipeline option) is %q after the dry run, was %q", n, got, before[n])
		}
	}
	if describedOnly("dataflow") {
		t.Error("the Dataflow runner still only describes jobs after the dry run")
	}
}

func TestSetBeamFlags(t *testing.T) {
	old := flagValue("project")
	restore, err := SetBeamFlags(map[string]string{"project": "p1", "template_location": "gs://b/t"})
	if err != nil {
		t.Fatal(err)
	}
	if flagValue("project") != "p1" || !describedOnly("DataflowRunner") || describedOnly("prism") {
		t.Errorf("project %q, described only on Dataflow %v, on prism %v", flagValue("project"), describedOnly("DataflowRunner"), describedOnly("prism"))
	}
	restore()
	if flagValue("project") != old || flagValue("template_location") != "" {
		t.Errorf("not restored: project %q, template_location %q", flagValue("project"), flagValue("template_location"))
	}

	// A bad name or a list flag sets nothing, not even the good names before it.
	// (Names are applied in sorted order, so max_num_workers is set first.)
	for _, bad := range []map[string]string{
		{"max_num_workers": "3", "no_such_beam_flag": "x"},
		{"max_num_workers": "3", "resource_hints": "min_ram=1GB"},
		{"max_num_workers": "3", "num_workers": "not a number"},
	} {
		if _, err := SetBeamFlags(bad); err == nil {
			t.Errorf("SetBeamFlags(%v) succeeded", bad)
		}
		if got := flagValue("max_num_workers"); got != "0" {
			t.Errorf("after SetBeamFlags(%v) failed, --max_num_workers is %q", bad, got)
		}
	}
}

// TestFlexTemplateMetadata checks deploy/dataflow/flex-template/metadata.json
// against the Dataflow API's TemplateMetadata, and that each parameter is a
// flag `beamtune retrain` accepts: the launcher passes every parameter as
// --name=value, and an unknown flag makes the launch fail.
func TestFlexTemplateMetadata(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("..", "deploy", "dataflow", "flex-template", "metadata.json"))
	if err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var md df.TemplateMetadata
	if err := dec.Decode(&md); err != nil {
		t.Fatalf("metadata.json: %v", err)
	}
	if md.Name == "" || md.Description == "" || md.Streaming {
		t.Errorf("name %q, description %q, streaming %v: want a named, described batch template", md.Name, md.Description, md.Streaming)
	}
	types := map[string]bool{"": true, "TEXT": true, "GCS_READ_FILE": true, "GCS_READ_FOLDER": true, "GCS_WRITE_FOLDER": true}
	// config is retrain's own flag (cmd/beamtune); every other parameter must
	// be a Beam flag, registered in this test binary too.
	retrainFlags := map[string]bool{"config": true}
	seen := map[string]bool{}
	for _, p := range md.Parameters {
		if seen[p.Name] {
			t.Errorf("parameter %s declared twice", p.Name)
		}
		seen[p.Name] = true
		if p.Label == "" || p.HelpText == "" || !types[p.ParamType] {
			t.Errorf("parameter %s: label %q, help %q, type %q", p.Name, p.Label, p.HelpText, p.ParamType)
		}
		if !retrainFlags[p.Name] && flag.Lookup(p.Name) == nil {
			t.Errorf("parameter %s is not a flag beamtune accepts", p.Name)
		}
		for _, re := range p.Regexes {
			if _, err := regexp.Compile(re); err != nil {
				t.Errorf("parameter %s: regex %q: %v", p.Name, re, err)
			}
		}
	}
	cfg := md.Parameters[0]
	if cfg.Name != "config" || cfg.IsOptional || len(cfg.Regexes) == 0 {
		t.Fatalf("the first parameter must be the required config path, got %+v", cfg)
	}
	re := regexp.MustCompile(cfg.Regexes[0])
	if !re.MatchString("gs://bucket/retrain/sst2.yaml") || re.MatchString("/local/retrain.yaml") {
		t.Errorf("config regex %q must accept gs:// paths only", cfg.Regexes[0])
	}
	for _, n := range []string{"sdk_container_image", "dataflow_service_options"} {
		if !seen[n] {
			t.Errorf("parameter %s missing: without it the workers get Beam's image or no GPU", n)
		}
	}
}

// TestFlexLauncherScript runs the Flex Template entry script with a stand-in
// binary: the subcommand must come first, and the launcher's flags must come
// after the defaults so they win.
func TestFlexLauncherScript(t *testing.T) {
	if _, err := exec.LookPath("sh"); err != nil {
		t.Skip("no sh")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "beamtune")
	if err := os.WriteFile(bin, []byte("#!/bin/sh\nfor a in \"$@\"; do echo \"$a\"; done\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	script := filepath.Join("..", "deploy", "dataflow", "flex-template", "retrain-launch.sh")
	cmd := exec.Command("sh", script, "--config=gs://b/r.yaml", "--runner=DataflowRunner", "--sdk_container_image=from-launch")
	cmd.Env = append(os.Environ(), "BEAMTUNE_BIN="+bin, "BEAMTUNE_SDK_CONTAINER_IMAGE=baked")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s: %v", script, err)
	}
	got := strings.Split(strings.TrimSpace(string(out)), "\n")
	want := []string{"retrain", "--sdk_container_image=baked", "--worker_binary=" + bin,
		"--config=gs://b/r.yaml", "--runner=DataflowRunner", "--sdk_container_image=from-launch"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("the script ran\n  %q\nwant\n  %q", got, want)
	}

	// Without a baked image the flag is left to the launch parameters.
	cmd = exec.Command("sh", script, "--config=gs://b/r.yaml")
	cmd.Env = append(os.Environ(), "BEAMTUNE_BIN="+bin, "BEAMTUNE_SDK_CONTAINER_IMAGE=")
	out, err = cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(out), "sdk_container_image") {
		t.Errorf("an empty baked image still passed the flag:\n%s", out)
	}
}

package backfill

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// The checkpoint is a JSON file under the state directory, one per job
// identity (buckets, prefix, window, layout): for every listed prefix the
// last key whose record (and every record before it) Kafka acknowledged,
// or done. ListObjectsV2 returns keys in order, so a restarted job lists
// each unfinished prefix with StartAfter = that key and republishes at
// most the pages acknowledged since the last save and those in flight
// (same ids, so harmless downstream). It is written atomically (temp file + rename) at
// most once a second and at the end.
type checkpoint struct {
	path string

	mu      sync.Mutex
	state   checkpointFile
	dirty   bool
	lastSav time.Time
}

type jobIdentity struct {
	Buckets []string  `json:"buckets"`
	Prefix  string    `json:"prefix"`
	Start   time.Time `json:"window_start"`
	End     time.Time `json:"window_end"`
	Layout  string    `json:"layout,omitempty"`
	Slack   string    `json:"partition_slack,omitempty"`
	NoPrune bool      `json:"no_prune,omitempty"`
}

type unitState struct {
	After string `json:"after,omitempty"`
	Done  bool   `json:"done,omitempty"`
}

type checkpointFile struct {
	Version  int                  `json:"version"`
	Job      jobIdentity          `json:"job"`
	Complete bool                 `json:"complete"`
	Updated  time.Time            `json:"updated_at"`
	Units    map[string]unitState `json:"units"`
}

// checkpointPath returns the checkpoint file of the job with these
// arguments under dir.
func checkpointPath(dir string, id jobIdentity) string {
	b, _ := json.Marshal(id)
	sum := sha256.Sum256(b)
	return filepath.Join(dir, "backfill-media-"+hex.EncodeToString(sum[:8])+".json")
}

func openCheckpoint(dir string, id jobIdentity) (*checkpoint, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("--state-dir %s: %w", dir, err)
	}
	c := &checkpoint{path: checkpointPath(dir, id)}
	b, err := os.ReadFile(c.path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		c.state = checkpointFile{Version: 1, Job: id, Units: map[string]unitState{}}
		return c, nil
	case err != nil:
		return nil, fmt.Errorf("checkpoint %s: %w", c.path, err)
	}
	if err := json.Unmarshal(b, &c.state); err != nil {
		return nil, fmt.Errorf("checkpoint %s: %w (delete it to start over)", c.path, err)
	}
	if c.state.Units == nil {
		c.state.Units = map[string]unitState{}
	}
	if c.state.Complete {
		// A finished job run again publishes again (ids are the same).
		c.state = checkpointFile{Version: 1, Job: id, Units: map[string]unitState{}}
	}
	return c, nil
}

func unitKey(bucket, prefix string) string { return bucket + "/" + prefix }

func (c *checkpoint) unit(bucket, prefix string) unitState {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.state.Units[unitKey(bucket, prefix)]
}

func (c *checkpoint) advance(bucket, prefix, after string) {
	c.mu.Lock()
	c.state.Units[unitKey(bucket, prefix)] = unitState{After: after}
	c.dirty = true
	due := time.Since(c.lastSav) > time.Second
	c.mu.Unlock()
	if due {
		_ = c.save()
	}
}

func (c *checkpoint) finish(bucket, prefix string) {
	c.mu.Lock()
	c.state.Units[unitKey(bucket, prefix)] = unitState{Done: true}
	c.dirty = true
	due := time.Since(c.lastSav) > time.Second
	c.mu.Unlock()
	if due {
		_ = c.save()
	}
}

func (c *checkpoint) markComplete() {
	c.mu.Lock()
	c.state.Complete = true
	c.dirty = true
	c.mu.Unlock()
}

// save writes the checkpoint if it changed.
func (c *checkpoint) save() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.dirty {
		return nil
	}
	c.state.Updated = time.Now().UTC()
	b, err := json.MarshalIndent(&c.state, "", " ")
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(c.path), ".ckpt-*")
	if err != nil {
		return fmt.Errorf("checkpoint: %w", err)
	}
	if _, err := tmp.Write(b); err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), c.path)
	}
	if err != nil {
		_ = os.Remove(tmp.Name())
		return fmt.Errorf("checkpoint %s: %w", c.path, err)
	}
	c.dirty = false
	c.lastSav = time.Now()
	return nil
}

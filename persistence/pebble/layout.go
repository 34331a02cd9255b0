package pebble

import (
	"bytes"
	"errors"
	"fmt"

	pebbledb "github.com/cockroachdb/pebble/v2"
	"go.uber.org/zap"
)

// layoutKey holds the key layout of the database, one byte. Databases
// written before it existed have none and use layout 1.
var layoutKey = []byte{famMeta, 'l', 'a', 'y', 'o', 'u', 't'}

// layout is the key layout this code reads and writes (keys.go). Layout 3
// has the keys of layout 2 and writes no bucket index rows.
const layout = 3

// errLayout reports a database written in a layout this code cannot read.
var errLayout = errors.New("persistence/pebble: unknown key layout")

// moveBatchKeys is how many layout 1 keys one synced batch moves.
const moveBatchKeys = 4096

// upgradeLayout brings db to the current layout. A new database is only
// marked. A layout 1 database has its checkin rows moved to the layout 2
// keys in synced batches, each of which writes the new keys and deletes the
// old in one atomic step, and is marked once all are moved: a crash part
// way leaves a database that is still unmarked, and the next open moves the
// rest. A layout 2 database only has its mark changed: its rows are layout
// 3 rows, and its bucket index rows are left unread. (Binaries that write
// layout 2 refuse a database marked 3: they would write index rows that
// readers no longer need, and read index rows that new writes no longer
// make.) A database marked with another layout is refused.
func upgradeLayout(db *pebbledb.DB, log *zap.Logger) error {
	v, closer, err := db.Get(layoutKey)
	if err == nil {
		got := -1
		if len(v) == 1 {
			got = int(v[0])
		}
		_ = closer.Close()
		switch got {
		case layout:
			return nil
		case 2:
			log.Info("marked the database with the current key layout", zap.Int("from", got), zap.Int("layout", layout))
			return storeErr(db.Set(layoutKey, []byte{layout}, pebbledb.Sync))
		}
		return fmt.Errorf("%w: the database has layout %d, this version reads layout %d", errLayout, got, layout)
	}
	if !errors.Is(err, pebbledb.ErrNotFound) {
		return storeErr(err)
	}
	moved, err := moveLayout1(db, log)
	if err != nil {
		return err
	}
	if moved > 0 {
		log.Info("moved checkin rows to the current key layout", zap.Int("layout", layout), zap.Int("keys", moved))
	}
	return storeErr(db.Set(layoutKey, []byte{layout}, pebbledb.Sync))
}

// moveLayout1 rewrites every layout 1 checkin row (family | user id | sep |
// rest) as famUserScoped | user id | sep | family | rest and returns how
// many it moved.
func moveLayout1(db *pebbledb.DB, log *zap.Logger) (int, error) {
	it, err := db.NewIter(&pebbledb.IterOptions{LowerBound: []byte{famByUser}, UpperBound: []byte{famCheckinByID + 1}})
	if err != nil {
		return 0, storeErr(err)
	}
	defer it.Close()
	b := db.NewBatch()
	defer func() { _ = b.Close() }()
	moved := 0
	commit := func() error {
		if b.Empty() {
			return nil
		}
		if err := b.Commit(pebbledb.Sync); err != nil {
			return storeErr(err)
		}
		_ = b.Close()
		b = db.NewBatch()
		return nil
	}
	var key []byte
	for ok := it.First(); ok; ok = it.Next() {
		k := it.Key()
		i := bytes.IndexByte(k[1:], sep)
		if i < 0 {
			return moved, fmt.Errorf("%w: layout 1 key %x has no user id", errCorrupt, k)
		}
		user, rest := k[1:1+i], k[1+i+1:]
		key = append(append(append(append(append(key[:0], famUserScoped), user...), sep), k[0]), rest...)
		v, err := it.ValueAndErr()
		if err != nil {
			return moved, storeErr(err)
		}
		if err := b.Set(key, v, nil); err != nil {
			return moved, storeErr(err)
		}
		if err := b.Delete(k, nil); err != nil {
			return moved, storeErr(err)
		}
		if moved++; moved%moveBatchKeys == 0 {
			if err := commit(); err != nil {
				return moved, err
			}
			if moved%(64*moveBatchKeys) == 0 {
				log.Info("moving checkin rows to the current key layout", zap.Int("layout", layout), zap.Int("keys", moved))
			}
		}
	}
	if err := it.Error(); err != nil {
		return moved, storeErr(err)
	}
	return moved, commit()
}

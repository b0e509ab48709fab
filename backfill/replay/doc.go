// Package replay rewinds a stopped consumer group's committed offsets to
// the first offset at or after a moment (kadm), so the group re-reads its
// input from then on. It refuses while the group has live members.
package replay

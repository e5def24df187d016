// Package creator is creator-side work: where a train is and what happened
// at each stop.
//
// Status finds a trainyard/v1 train in the network (the creator's outbox
// once its route is complete, else the inbox of the station it waits for),
// verifies it from its first stop, and merges the signed stop records with
// the signed stop notices stations push to the creator's outbox when a stop
// ends without a record (refused, rejected, withheld, failed).
package creator

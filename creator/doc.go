// Package creator is creator-side work: building a train, reading its
// results, and finding where it is and what happened at each stop.
//
// Approvers sign ApprovalDigest of the code tree, exec config and base
// image. Create builds a trainyard/v1 train image from Options (trust, spec,
// the creator's key, code directory, base image; each required field left
// unset is named in one ErrOptions error) and checks it as its first station
// will before it is pushed. OpenResults verifies a finished train from its
// first stop and decrypts the final results.
//
// Status finds a trainyard/v1 train in the network (the creator's outbox
// once its route is complete, else the inbox of the station it waits for),
// verifies it from its first stop, and merges the signed stop records with
// the signed stop notices stations push to the creator's outbox when a stop
// ends without a record (refused, rejected, withheld, failed).
package creator

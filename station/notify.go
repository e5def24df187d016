package station

import (
	"context"
	"time"

	"github.com/trainyard/trainyard/protocol/hardened"
)

// notify tells a train's creator, with a notice signed by this station in
// their outbox, that a stop ended without passing the train on (refused,
// rejected, withheld, failed). Only v1 stations have a key the creator can
// check it with. A notice that cannot be pushed is logged: the stop's
// outcome stands either way, and `train status` still shows where the
// train is.
func (s *Station) notify(ctx context.Context, st *Stop) {
	key := s.v1Key()
	if key == nil || st.Creator == "" || st.Train == "" {
		return
	}
	nt := hardened.Notice{Protocol: hardened.Protocol, Train: st.Train, TrainDigest: st.Digest, Station: s.ID,
		Index: st.Index, Outcome: string(st.State), Reason: st.Reason, Time: time.Now().UTC()}
	if st.State == Failed {
		nt.ExitCode = st.ExitCode
	}
	ref, err := Outbox{Client: s.Client, Network: s.Network, User: st.Creator}.PushNotice(ctx, key, nt)
	if err != nil {
		s.logger().Warn("could not tell the creator", "train", st.Train, "creator", st.Creator, "error", err.Error())
		return
	}
	st.Notice = ref
}

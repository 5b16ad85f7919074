package camera

import "time"

// SetBackoff replaces the retry schedule of s (tests only), so that tests of retry behaviour
// need not wait through the production schedule.
func SetBackoff(s *Source, steps ...time.Duration) { s.steps = steps }

// SetBackoffReset replaces how long a session must stream to start the schedule over.
func SetBackoffReset(s *Source, d time.Duration) { s.resetAfter = d }

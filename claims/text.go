package claims

import "time"

// MinDuration is the shortest drop window or extension: below a second the
// overlay's countdown cannot even show it, and "1ns" is a typo, not a drop.
const MinDuration = time.Second

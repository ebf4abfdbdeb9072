"""The pure core: detection, matching and deciding. No I/O, no clock; `now` is passed in."""

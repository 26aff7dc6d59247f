// Package microdrop holds the few words every part of microdrop shares: the
// kinds of Event that cross the system and the Bus that carries them; the
// error vocabulary (codes, Error, Errorf) and the JSON helpers every HTTP
// edge maps it with; the one admin check, server-side sessions, the local
// device identity, and the text checks applied at every edge.
//
// It must never import another microdrop package; everything else imports it.
package microdrop

// Package microdrop holds the few words every part of microdrop shares: the
// kinds of Event that cross the system and the Bus that carries them.
//
// It must never import another microdrop package; everything else imports it.
package microdrop

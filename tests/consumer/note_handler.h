// An out-of-tree LUO file handler, written against the installed kernel
// face only: "note-v1" preserves small memfds whose name starts with
// "note" (up to one page of data) by copying their bytes into one
// preserved page, and retrieves them as a new memfd with the same bytes.
#ifndef KHOSIM_CONSUMER_NOTE_HANDLER_H_
#define KHOSIM_CONSUMER_NOTE_HANDLER_H_

#define NOTE_FH_COMPATIBLE "note-v1"

// Registers the handler with LUO: 0, also when LUO is disabled.
int note_luo_init(void);

#endif  // KHOSIM_CONSUMER_NOTE_HANDLER_H_

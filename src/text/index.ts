// Text as a terminal shows it: the one escaping rule for whatever the product prints from input
// (the CLI's lines, the log's terminal lines). A leaf: it imports nothing.

/**
 * Characters a terminal acts on or that change how a line reads: C0 controls (ESC starts `ESC ] 0 ;`
 * title changes and `ESC [ 2 J` screen clears; CR rewrites the line), DEL, the C1 controls (U+009B is
 * an 8-bit CSI), and the bidirectional overrides that reorder what is shown. Tab is kept; a line
 * feed is kept only where the text is the product's own (a table), never in a value taken from input.
 */
const CONTROLS =
  '\\u0000-\\u0008\\u000b-\\u001f\\u007f-\\u009f\\u061c\\u200e\\u200f\\u202a-\\u202e\\u2066-\\u2069';
const TERMINAL_CONTROL = new RegExp(`[${CONTROLS}]`, 'g');
const TERMINAL_CONTROL_OR_NEWLINE = new RegExp(`[\\n${CONTROLS}]`, 'g');

/** Text with every terminal control character written out as `\xHH` or `\uHHHH`, so it prints as read. */
export function escapeText(text: string, options: { newlines?: boolean } = {}): string {
  return text.replace(options.newlines ? TERMINAL_CONTROL_OR_NEWLINE : TERMINAL_CONTROL, (c) => {
    const code = c.charCodeAt(0);
    return code <= 0xff
      ? `\\x${code.toString(16).padStart(2, '0')}`
      : `\\u${code.toString(16).padStart(4, '0')}`;
  });
}

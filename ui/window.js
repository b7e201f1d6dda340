const q = (s) => element.querySelector(s);
/* While a handle moves (dragged, or nudged with the arrow keys), only the cheap parts follow at once: the fill, the
 * label and the profile's line. The strip's shading waits until the handle rests (STRIP_MS), and the new window
 * reaches the server once (COMMIT_MS): each `props.value` re-renders the widget and queues the form's events, which
 * cost about half a second of page work per key press when every press sent one. */
const STRIP_MS = 120, COMMIT_MS = 350;
let stripTimer = null, commitTimer = null;
function span() {
  const lo = q('.hw-lo'), hi = q('.hw-hi'), root = q('.hw');
  if (!lo || !hi || !root) return null;
  return { k: Number(root.dataset.steps) || 1, a: Number(lo.value), b: Number(hi.value) };
}
function paintHandles() {
  const s = span(); if (!s) return;
  const { k, a, b } = s;
  const fill = q('.hw-fill');
  fill.style.left = (100 * a / k) + '%';
  fill.style.width = (100 * Math.max(0, b - a) / k) + '%';
  q('.hw-text').textContent = b > a ? `steps ${a}–${b - 1}  (${b - a} of ${k})` : 'empty window';
  const line = q('.hw-pline');
  if (line) line.textContent = (props.lines || [])[a] || '';
}
function paintStrip() {
  stripTimer = null;
  const s = span(); if (!s) return;
  element.querySelectorAll('.hw-strip img, .hw-prof i').forEach((img) => {
    const i = Number(img.dataset.step), inside = i >= s.a && i < s.b;
    img.classList.toggle('in', inside);
    img.classList.toggle('out', !inside);
  });
}
function paint() { paintHandles(); paintStrip(); }
function commit() {
  commitTimer = null;
  const s = span(); if (!s) return;
  const value = `${s.a}:${s.b}`;
  if (props.value !== value) props.value = value;
}
element.addEventListener('input', (e) => {
  const lo = q('.hw-lo'), hi = q('.hw-hi');
  if (e.target !== lo && e.target !== hi) return;
  const k = Number(q('.hw').dataset.steps) || 1;
  let a = Number(lo.value), b = Number(hi.value);
  if (e.target === lo && a >= b) { a = Math.max(0, b - 1); if (a >= b) { b = a + 1; hi.value = b; } lo.value = a; }
  if (e.target === hi && b <= a) { b = Math.min(k, a + 1); if (b <= a) { a = b - 1; lo.value = a; } hi.value = b; }
  paintHandles();
  clearTimeout(stripTimer);
  stripTimer = setTimeout(paintStrip, STRIP_MS);
});
element.addEventListener('change', (e) => {
  const lo = q('.hw-lo'), hi = q('.hw-hi');
  if (e.target !== lo && e.target !== hi) return;
  clearTimeout(commitTimer);
  commitTimer = setTimeout(commit, COMMIT_MS);
});
watch(['value', 'steps', 'strip', 'profile', 'lines'], paint);
paint();

const q = (s) => element.querySelector(s);
function paint() {
  const lo = q('.hw-lo'), hi = q('.hw-hi'), root = q('.hw');
  if (!lo || !hi || !root) return;
  const k = Number(root.dataset.steps) || 1, a = Number(lo.value), b = Number(hi.value);
  const fill = q('.hw-fill');
  fill.style.left = (100 * a / k) + '%';
  fill.style.width = (100 * Math.max(0, b - a) / k) + '%';
  element.querySelectorAll('.hw-strip img, .hw-prof i').forEach((img) => {
    const i = Number(img.dataset.step), inside = i >= a && i < b;
    img.classList.toggle('in', inside);
    img.classList.toggle('out', !inside);
  });
  q('.hw-text').textContent = b > a ? `steps ${a}–${b - 1}  (${b - a} of ${k})` : 'empty window';
  const line = q('.hw-pline');
  if (line) line.textContent = (props.lines || [])[a] || '';
}
element.addEventListener('input', (e) => {
  const lo = q('.hw-lo'), hi = q('.hw-hi');
  if (e.target !== lo && e.target !== hi) return;
  const k = Number(q('.hw').dataset.steps) || 1;
  let a = Number(lo.value), b = Number(hi.value);
  if (e.target === lo && a >= b) { a = Math.max(0, b - 1); if (a >= b) { b = a + 1; hi.value = b; } lo.value = a; }
  if (e.target === hi && b <= a) { b = Math.min(k, a + 1); if (b <= a) { a = b - 1; lo.value = a; } hi.value = b; }
  paint();
});
element.addEventListener('change', (e) => {
  const lo = q('.hw-lo'), hi = q('.hw-hi');
  if (e.target !== lo && e.target !== hi) return;
  props.value = `${lo.value}:${hi.value}`;
});
watch(['value', 'steps', 'strip', 'profile', 'lines'], paint);
paint();

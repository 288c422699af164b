// The page of `engine serve`: sends a picked, dropped or drawn image to /invocations and shows
// the top classes; shows the model card from /model-card. No inline code: the server's
// Content-Security-Policy allows scripts from this origin only.
'use strict';

const $ = (id) => document.getElementById(id);
const TOP = 5;
// Drawing is offered for small gray models, whose training images a mouse sketch resembles.
const MAX_DRAW_SIDE = 64;

function text(tag, content, className) {
  const el = document.createElement(tag);
  el.textContent = content;
  if (className) el.className = className;
  return el;
}

function percent(p) {
  return (100 * p).toFixed(1) + '%';
}

function setStatus(message, isError) {
  $('status').textContent = message;
  $('status').classList.toggle('error', Boolean(isError));
}

async function classify(blob) {
  setStatus('Classifying…');
  const type = blob.type && blob.type.startsWith('image/') ? blob.type : 'image/png';
  const started = performance.now();
  let answer;
  try {
    const response = await fetch('/invocations', { method: 'POST', headers: { 'Content-Type': type }, body: blob });
    answer = await response.json();
    if (!response.ok) throw new Error(answer.message || response.statusText);
  } catch (e) {
    setStatus('The server refused the image: ' + e.message, true);
    return;
  }
  const millis = performance.now() - started;
  showPrediction(answer.predictions.probabilities[0], answer.classes, millis);
}

function showPrediction(probabilities, classes, millis) {
  const ranked = probabilities.map((p, i) => [p, i]).sort((a, b) => b[0] - a[0]).slice(0, TOP);
  const bars = $('bars');
  bars.replaceChildren();
  for (const [p, i] of ranked) {
    const item = document.createElement('li');
    const bar = text('div', '', 'bar');
    bar.style.width = percent(p);
    const track = text('div', '', 'track');
    track.append(bar);
    item.append(text('span', classes[i], 'name'), track, text('span', percent(p), 'value'));
    item.setAttribute('aria-label', classes[i] + ': ' + percent(p));
    bars.append(item);
  }
  $('predicted').textContent = classes[ranked[0][1]];
  $('predicted').dataset.index = String(ranked[0][1]);
  $('latency').textContent = '(' + millis.toFixed(1) + ' ms round trip)';
  setStatus('Done.');
}

function pickFile(file) {
  if (!file) return;
  const preview = $('preview');
  if (preview.src) URL.revokeObjectURL(preview.src);
  preview.src = URL.createObjectURL(file);
  preview.hidden = false;
  classify(file);
}

function setUpDrop() {
  const drop = $('drop');
  $('file').addEventListener('change', (e) => pickFile(e.target.files[0]));
  drop.addEventListener('dragover', (e) => { e.preventDefault(); drop.classList.add('over'); });
  drop.addEventListener('dragleave', () => drop.classList.remove('over'));
  drop.addEventListener('drop', (e) => {
    e.preventDefault();
    drop.classList.remove('over');
    pickFile(e.dataTransfer.files[0]);
  });
}

function setUpDrawing() {
  const canvas = $('canvas');
  const context = canvas.getContext('2d');
  const clear = () => { context.fillStyle = '#000'; context.fillRect(0, 0, canvas.width, canvas.height); };
  clear();
  let drawing = false;
  const point = (e) => {
    const box = canvas.getBoundingClientRect();
    return [(e.clientX - box.left) * canvas.width / box.width, (e.clientY - box.top) * canvas.height / box.height];
  };
  canvas.addEventListener('pointerdown', (e) => {
    drawing = true;
    context.beginPath();
    context.moveTo(...point(e));
  });
  canvas.addEventListener('pointermove', (e) => {
    if (!drawing) return;
    context.lineTo(...point(e));
    context.strokeStyle = '#fff';
    context.lineWidth = 22;
    context.lineCap = 'round';
    context.lineJoin = 'round';
    context.stroke();
  });
  const stop = () => { drawing = false; };
  canvas.addEventListener('pointerup', stop);
  canvas.addEventListener('pointerleave', stop);
  $('clear-drawing').addEventListener('click', clear);
  $('classify-drawing').addEventListener('click', () => canvas.toBlob((blob) => classify(blob), 'image/png'));
}

function showCard(card) {
  const name = card.name ? card.name + (card.version ? ' v' + card.version : '') : card.model_uri;
  $('model-line').textContent = name + ': ' + card.channels + '×' + card.height + '×' + card.width + ' input, '
    + card.classes.length + ' classes';
  const fields = [
    ['Model', card.model_uri],
    ['Name', card.name || 'not registered'],
    ['Version', card.version || 'not registered'],
    ['Run', card.run_id || 'not available'],
    ['Network', card.format],
    ['Classes', card.classes.join(', ')],
    ['Test accuracy', card.test_accuracy == null ? 'not available' : percent(card.test_accuracy)],
    ['Reports from', card.reports_from || 'not available'],
  ];
  $('card').replaceChildren(...fields.flatMap(([k, v]) => [text('dt', k), text('dd', v)]));
  if (card.f1) $('f1').replaceChildren(table(['Class', 'F1'], card.classes.map((c, i) => [c, card.f1[i].toFixed(3)])));
  if (card.confusion_matrix) {
    const rows = card.confusion_matrix.map((row, i) => [card.classes[i], ...row.map(String)]);
    $('confusion').replaceChildren(table(['', ...card.classes], rows, true));
  }
  const small = card.channels === 1 && Math.max(card.height, card.width) <= MAX_DRAW_SIDE;
  $('draw-panel').hidden = !small;
}

function table(header, rows, diagonal) {
  const t = document.createElement('table');
  const head = document.createElement('tr');
  header.forEach((h) => head.append(text('th', h)));
  t.append(head);
  rows.forEach((row, r) => {
    const tr = document.createElement('tr');
    row.forEach((cell, c) => {
      const first = c === 0;
      tr.append(text(first ? 'th' : 'td', cell, diagonal && c === r + 1 ? 'diagonal' : ''));
    });
    t.append(tr);
  });
  return t;
}

async function loadCard() {
  try {
    const response = await fetch('/model-card');
    if (!response.ok) throw new Error(response.statusText);
    showCard(await response.json());
  } catch (e) {
    $('model-line').textContent = 'The model card is not available (' + e.message + ').';
  }
}

setUpDrop();
setUpDrawing();
loadCard();

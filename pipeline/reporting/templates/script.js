(function(){
function key(td){var v=td.getAttribute('data-v');if(v===null)v=td.textContent.trim();
var n=parseFloat(v);return isNaN(n)?v.toLowerCase():n;}
document.querySelectorAll('table.sortable').forEach(function(t){
t.querySelectorAll('th').forEach(function(th,col){th.addEventListener('click',function(){
var body=t.tBodies[0],rows=Array.prototype.slice.call(body.rows);
var asc=th.getAttribute('data-dir')!=='asc';t.querySelectorAll('th').forEach(function(h){
h.removeAttribute('data-dir');});th.setAttribute('data-dir',asc?'asc':'desc');
rows.sort(function(a,b){var x=key(a.cells[col]),y=key(b.cells[col]);
if(typeof x!==typeof y){x=String(x);y=String(y);}return (x<y?-1:x>y?1:0)*(asc?1:-1);});
rows.forEach(function(r){body.appendChild(r);});});});});
document.querySelectorAll('.viewer').forEach(function(v){
var h=parseFloat(v.getAttribute('data-h')),idx=JSON.parse(v.getAttribute('data-slices'));
var range=v.querySelector('input[type=range]'),pos=v.querySelector('.pos');
var over=v.querySelector('img.over'),box=v.querySelector('input[type=checkbox]');
function show(){var k=parseInt(range.value,10);v.querySelectorAll('.tile img').forEach(
function(im){im.style.transform='translateY('+(-k*h)+'px)';});
pos.textContent='slice '+idx[k];}
range.addEventListener('input',show);if(box)box.addEventListener('change',function(){
over.style.visibility=box.checked?'visible':'hidden';});show();});})();

import { it } from 'vitest';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { openStore } from '../../src/store/index.js';
import { createAuditLog } from '../../src/audit/index.js';
it('probe', async () => {
const s = await openStore({ kind: 'sqlite', path: mkdtempSync(tmpdir() + '/probe-') + '/x.db' });
const a = createAuditLog(s, { now: () => 1000 });
await a.record([{actor:'a',action:'x'},{actor:'a',action:'y'},{actor:'a',action:'z'}]);
const row = s.sqlite!.prepare('select * from audit_log where seq=2').get() as any;
try { s.sqlite!.prepare("insert or replace into audit_log (seq,at,actor,action,subject,details,prev_hash,hash) values (2,?,?,?,?,?,?,?)").run(row.at,'evil',row.action,row.subject,row.details,row.prev_hash,row.hash); console.log('REPLACE succeeded'); } catch (e) { console.log('refused', (e as Error).message); }
console.log(s.sqlite!.prepare('select seq, actor from audit_log').all());
console.log(await a.verify());
try { s.sqlite!.prepare("insert into audit_log (seq,at,actor,action,subject,details,prev_hash,hash) values (3,1,'a','b',null,'{}','p','h') on conflict(seq) do update set actor='evil2'").run(); console.log('UPSERT succeeded'); } catch (e) { console.log('upsert refused', (e as Error).message); }
try { s.sqlite!.prepare("insert or replace into leads (dedup_key,name,email,score,source_ts,state,ingested_at,updated_at,run_id,source_line) values ('k','n','e',50,1,'pending',1,1,1,1)").run(); } catch (e) { console.log('lead', (e as Error).message); }
await s.close();
});

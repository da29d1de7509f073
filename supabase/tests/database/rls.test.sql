-- Row level security and grants, per actor, on the five client-facing tables: anon, a
-- participant (the caller and the callee), a stranger, and service_role. Every count is limited
-- to this file's rows, so the file also runs on a project that already holds calls.
begin;
create extension if not exists pgtap with schema extensions;
select plan(43);

-- A (caller) calls B (callee); S is a stranger whom B blocked. B has one device with one ring.
insert into auth.users (id, email) values
  ('a0000000-0000-4000-8000-00000000000a', 'pgtap-caller@example.test'),
  ('b0000000-0000-4000-8000-00000000000b', 'pgtap-callee@example.test'),
  ('e0000000-0000-4000-8000-00000000000e', 'pgtap-stranger@example.test');
insert into public.calls (id, caller_id, callee_id)
values ('c0000000-0000-4000-8000-000000000001',
        'a0000000-0000-4000-8000-00000000000a', 'b0000000-0000-4000-8000-00000000000b');
insert into public.push_devices (id, user_id, platform, token)
values ('d0000000-0000-4000-8000-00000000000b', 'b0000000-0000-4000-8000-00000000000b',
        'android', 'pgtap-callee-fcm-token-0123456789abcdef');
insert into public.push_deliveries (call_id, device_id, recipient_id, kind, provider)
values ('c0000000-0000-4000-8000-000000000001', 'd0000000-0000-4000-8000-00000000000b',
        'b0000000-0000-4000-8000-00000000000b', 'ring', 'fcm');
insert into public.call_blocks (blocker_id, blocked_id)
values ('b0000000-0000-4000-8000-00000000000b', 'e0000000-0000-4000-8000-00000000000e');
-- Besides the trigger's call_created: a token for A, a push to B, an operator note.
insert into public.call_audit (call_id, actor_id, actor, event) values
  ('c0000000-0000-4000-8000-000000000001', 'a0000000-0000-4000-8000-00000000000a', 'system',
   'token_issued'),
  ('c0000000-0000-4000-8000-000000000001', null, 'system', 'push_sent'),
  ('c0000000-0000-4000-8000-000000000001', null, 'operator', 'operator_action');

-- anon: nothing at all.
set local "request.jwt.claims" = '{"role": "anon"}';
set local role anon;
select throws_ok('select 1 from public.calls', '42501', null, 'anon cannot read calls');
select throws_ok('select 1 from public.call_audit', '42501', null, 'anon cannot read call_audit');
select throws_ok('select 1 from public.push_devices', '42501', null,
  'anon cannot read push_devices');
select throws_ok('select 1 from public.push_deliveries', '42501', null,
  'anon cannot read push_deliveries');
select throws_ok('select 1 from public.call_blocks', '42501', null,
  'anon cannot read call_blocks');
select throws_ok(
  $$ insert into public.calls (caller_id, callee_id)
     values ('a0000000-0000-4000-8000-00000000000a', 'b0000000-0000-4000-8000-00000000000b') $$,
  '42501', null, 'anon cannot start a call');
reset role;

-- The caller: the call, its status events and their own token; not the callee's device rows.
set local "request.jwt.claims" = '{"sub": "a0000000-0000-4000-8000-00000000000a", "role": "authenticated"}';
set local role authenticated;
select is((select count(*)::int from public.calls
           where id = 'c0000000-0000-4000-8000-000000000001'), 1, 'the caller reads the call');
select set_eq(
  $$ select event from public.call_audit where call_id = 'c0000000-0000-4000-8000-000000000001' $$,
  array['call_created', 'token_issued'],
  'the caller reads the status events and their own token_issued only');
select is((select count(*)::int from public.push_devices
           where id = 'd0000000-0000-4000-8000-00000000000b'), 0,
  'the caller does not see the callee''s device');
select is((select count(*)::int from public.push_deliveries
           where call_id = 'c0000000-0000-4000-8000-000000000001'), 0,
  'the caller does not see the callee''s deliveries');
select is((select count(*)::int from public.call_blocks
           where blocker_id = 'b0000000-0000-4000-8000-00000000000b'), 0,
  'the caller does not see the callee''s blocks');
select throws_ok(
  $$ select detail from public.call_audit $$, '42501', null, 'audit detail is never readable');
select throws_ok(
  $$ insert into public.call_audit (call_id, actor, event)
     values ('c0000000-0000-4000-8000-000000000001', 'caller', 'call_ended') $$,
  '42501', null, 'a participant cannot write the audit');
select throws_ok(
  $$ insert into public.push_deliveries (call_id, kind, provider)
     values ('c0000000-0000-4000-8000-000000000001', 'ring', 'fcm') $$,
  '42501', null, 'a participant cannot write deliveries');
select throws_ok(
  $$ insert into public.push_devices (user_id, platform, token)
     values ('a0000000-0000-4000-8000-00000000000a', 'android',
             'pgtap-caller-fcm-token-0123456789abcdef') $$,
  '42501', null, 'devices are registered only through register_push_device');
select throws_ok(
  $$ update public.calls set video = false
     where id = 'c0000000-0000-4000-8000-000000000001' $$,
  '42501', null, 'a participant may change only status and end_reason');
select throws_ok(
  $$ delete from public.calls where id = 'c0000000-0000-4000-8000-000000000001' $$,
  '42501', null, 'nobody deletes a call');
reset role;

-- The callee: the call, status and device events, their device, deliveries and blocks.
set local "request.jwt.claims" = '{"sub": "b0000000-0000-4000-8000-00000000000b", "role": "authenticated"}';
set local role authenticated;
select is((select count(*)::int from public.calls
           where id = 'c0000000-0000-4000-8000-000000000001'), 1, 'the callee reads the call');
select set_eq(
  $$ select event from public.call_audit where call_id = 'c0000000-0000-4000-8000-000000000001' $$,
  array['call_created', 'push_sent'],
  'the callee reads the status and device events, not the caller''s token nor operator notes');
select is((select count(*)::int from public.push_devices
           where id = 'd0000000-0000-4000-8000-00000000000b'), 1, 'the callee reads their device');
select is((select count(*)::int from public.push_deliveries
           where call_id = 'c0000000-0000-4000-8000-000000000001'), 1,
  'the callee reads their deliveries');
select is((select count(*)::int from public.call_blocks
           where blocker_id = 'b0000000-0000-4000-8000-00000000000b'), 1,
  'the blocker reads their block');
select throws_ok(
  $$ update public.push_devices set token = 'pgtap-other-fcm-token-0123456789abcdef'
     where id = 'd0000000-0000-4000-8000-00000000000b' $$,
  '42501', null, 'even the owner cannot update a device row directly');
select lives_ok(
  $$ insert into public.call_blocks (blocked_id)
     values ('a0000000-0000-4000-8000-00000000000a') $$,
  'a user blocks someone in their own name (blocker_id defaults to auth.uid())');
reset role;

-- The stranger: sees nothing, changes nothing, cannot impersonate.
set local "request.jwt.claims" = '{"sub": "e0000000-0000-4000-8000-00000000000e", "role": "authenticated"}';
set local role authenticated;
select is((select count(*)::int from public.calls
           where id = 'c0000000-0000-4000-8000-000000000001'), 0, 'a stranger sees no call');
select is((select count(*)::int from public.call_audit
           where call_id = 'c0000000-0000-4000-8000-000000000001'), 0,
  'a stranger sees no audit row');
select is((select count(*)::int from public.push_devices
           where id = 'd0000000-0000-4000-8000-00000000000b'), 0, 'a stranger sees no device');
select is((select count(*)::int from public.push_deliveries
           where call_id = 'c0000000-0000-4000-8000-000000000001'), 0,
  'a stranger sees no delivery');
select is((select count(*)::int from public.call_blocks
           where blocked_id = 'e0000000-0000-4000-8000-00000000000e'), 0,
  'the blocked user cannot see the block');
select throws_ok(
  $$ insert into public.calls (caller_id, callee_id)
     values ('a0000000-0000-4000-8000-00000000000a', 'b0000000-0000-4000-8000-00000000000b') $$,
  '42501', null, 'a call cannot be started in someone else''s name');
select throws_ok(
  $$ insert into public.call_blocks (blocker_id, blocked_id)
     values ('b0000000-0000-4000-8000-00000000000b', 'a0000000-0000-4000-8000-00000000000a') $$,
  '42501', null, 'a block cannot be written in someone else''s name');
-- RLS hides the rows, so these change nothing (checked below as the owner).
update public.calls set status = 'ended', end_reason = 'cancelled'
where id = 'c0000000-0000-4000-8000-000000000001';
delete from public.call_blocks
where blocked_id = 'e0000000-0000-4000-8000-00000000000e';
delete from public.push_devices
where id = 'd0000000-0000-4000-8000-00000000000b';
reset role;
select is((select status from public.calls
           where id = 'c0000000-0000-4000-8000-000000000001'),
  'ringing', 'a stranger''s update reached no row');
select is((select count(*)::int from public.call_blocks
           where blocked_id = 'e0000000-0000-4000-8000-00000000000e'), 1,
  'the blocked user cannot delete the block');
select is((select count(*)::int from public.push_devices
           where id = 'd0000000-0000-4000-8000-00000000000b'), 1,
  'a stranger cannot delete someone''s device');

-- service_role (the worker may connect as it): reads everything, never rewrites the audit.
set local "request.jwt.claims" = '{"role": "service_role"}';
set local role service_role;
select is((select count(*)::int from public.calls
           where id = 'c0000000-0000-4000-8000-000000000001'), 1, 'service_role reads calls');
select is((select count(*)::int from public.call_audit
           where call_id = 'c0000000-0000-4000-8000-000000000001'), 4,
  'service_role reads every audit row');
select is((select count(*)::int from public.push_devices
           where id = 'd0000000-0000-4000-8000-00000000000b'), 1, 'service_role reads devices');
select is((select count(*)::int from public.push_deliveries
           where call_id = 'c0000000-0000-4000-8000-000000000001'), 1,
  'service_role reads deliveries');
select is((select count(*)::int from public.call_blocks
           where blocker_id = 'b0000000-0000-4000-8000-00000000000b'), 2,
  'service_role reads blocks');
select throws_ok(
  $$ delete from public.call_audit where call_id = 'c0000000-0000-4000-8000-000000000001' $$,
  '42501', null, 'service_role cannot delete audit rows');
select throws_ok(
  $$ delete from public.calls where id = 'c0000000-0000-4000-8000-000000000001' $$,
  '42501', null, 'service_role cannot delete calls');
reset role;

-- Last, as it ends the call: a participant's legal change goes through RLS and the trigger.
set local "request.jwt.claims" = '{"sub": "a0000000-0000-4000-8000-00000000000a", "role": "authenticated"}';
set local role authenticated;
select lives_ok(
  $$ update public.calls set status = 'ended', end_reason = 'cancelled'
     where id = 'c0000000-0000-4000-8000-000000000001' $$,
  'the caller cancels their call');
reset role;
select is((select ended_by from public.calls
           where id = 'c0000000-0000-4000-8000-000000000001'),
  'a0000000-0000-4000-8000-00000000000a'::uuid, 'the database records who ended it');

select finish();
rollback;

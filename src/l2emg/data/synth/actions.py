"""The action catalogue: every action of every scenario, with its builder, the phrases captions use
for it, and its natural duration.

Phrases are (third person, -ing form) pairs. `{side}` / `{other}` name the acting hand or leg and
its opposite, `{turn}` the direction of a turn; the generator fills them in (and swaps them for
mirrored, left-handed motions).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from l2emg.data.synth import gaits, gestures, jumps
from l2emg.data.synth.context import BuildContext, Built
from l2emg.labels import SCENARIOS


@dataclass(frozen=True)
class Action:
    id: str
    scenario: str
    build: Callable[[BuildContext], Built]
    phrases: tuple[tuple[str, str], ...]
    seconds: tuple[float, float] = (3.0, 8.0)   # natural duration range


def _a(id, scenario, build, phrases, seconds=(3.0, 8.0)) -> Action:
    return Action(id, scenario, build, tuple(phrases), seconds)


DL, SP, DA, SH, GA, AN, IP, AC = SCENARIOS

_CATALOGUE: tuple[Action, ...] = (
    # Daily Life
    _a("walk", DL, gaits.walk, [("walks forward", "walking forward"), ("takes a walk", "taking a walk"),
                                ("strolls ahead", "strolling ahead"), ("walks straight ahead", "walking straight ahead")]),
    _a("walk_circle", DL, gaits.walk_circle, [("walks in a circle to the {turn}", "walking in a circle to the {turn}"),
                                              ("walks around in a circle", "walking around in a circle"),
                                              ("turns {turn} while walking", "turning {turn} while walking")], (4.0, 9.8)),
    _a("wave", DL, gestures.wave, [("waves with the {side} hand", "waving with the {side} hand"),
                                   ("waves hello", "waving hello"), ("raises a hand and waves", "raising a hand and waving")]),
    _a("pick_up", DL, gestures.pick_up, [("bends down and picks something up", "bending down and picking something up"),
                                         ("picks up an object from the floor", "picking up an object from the floor"),
                                         ("crouches to lift something off the ground", "crouching to lift something off the ground")],
       (3.0, 6.0)),
    _a("sit_down", DL, gestures.sit_down, [("sits down on a chair and stands up again", "sitting down on a chair and standing up again"),
                                           ("takes a seat and then gets up", "taking a seat and then getting up"),
                                           ("sits down and rises", "sitting down and rising")], (4.5, 9.8)),
    _a("stretch", DL, gestures.stretch, [("stretches both arms above the head", "stretching both arms above the head"),
                                         ("stretches and leans from side to side", "stretching and leaning from side to side"),
                                         ("reaches up in a long stretch", "reaching up in a long stretch")]),
    # Sports
    _a("jog", SP, gaits.jog, [("jogs forward", "jogging forward"), ("goes for a jog", "going for a jog"),
                              ("jogs at an easy pace", "jogging at an easy pace")]),
    _a("run", SP, gaits.run, [("runs forward", "running forward"), ("sprints ahead", "sprinting ahead"),
                              ("runs fast", "running fast")]),
    _a("jumping_jacks", SP, jumps.jumping_jacks, [("does jumping jacks", "doing jumping jacks"),
                                                  ("performs jumping jacks", "performing jumping jacks"),
                                                  ("jumps while spreading the arms and legs", "jumping while spreading the arms and legs")]),
    _a("boxing", SP, gestures.boxing, [("throws punches like a boxer", "throwing punches like a boxer"),
                                       ("shadow boxes", "shadow boxing"), ("jabs and punches the air", "jabbing and punching the air")]),
    _a("kick", SP, gestures.kick, [("kicks forward with the {side} leg", "kicking forward with the {side} leg"),
                                   ("does front kicks", "doing front kicks"), ("kicks high in front", "kicking high in front")]),
    _a("throw", SP, gestures.throw, [("throws a ball overhand with the {side} arm", "throwing a ball overhand with the {side} arm"),
                                     ("winds up and throws a ball", "winding up and throwing a ball"),
                                     ("pitches a ball", "pitching a ball")], (2.5, 5.0)),
    _a("squats", SP, gestures.squats, [("does squats", "doing squats"), ("squats down and stands up repeatedly", "squatting down and standing up repeatedly"),
                                       ("performs bodyweight squats", "performing bodyweight squats")]),
    # Dance
    _a("side_steps", DA, gaits.side_steps, [("steps side to side to the beat", "stepping side to side to the beat"),
                                            ("grooves with side steps", "grooving with side steps"),
                                            ("dances a step touch from side to side", "dancing a step touch from side to side")]),
    _a("spin", DA, gaits.spin, [("spins around to the {turn}", "spinning around to the {turn}"), ("twirls in place", "twirling in place"),
                                ("turns around and around while dancing", "turning around and around while dancing")]),
    _a("arm_waves", DA, gestures.arm_waves, [("waves both arms above the head", "waving both arms above the head"),
                                             ("sways with the arms raised overhead", "swaying with the arms raised overhead"),
                                             ("dances with the arms up swinging side to side", "dancing with the arms up swinging side to side")]),
    _a("hip_sway", DA, gestures.hip_sway, [("sways the hips from side to side", "swaying the hips from side to side"),
                                           ("dances swinging the hips", "dancing swinging the hips"), ("grooves with the hips", "grooving with the hips")]),
    _a("twist_dance", DA, gestures.twist_dance, [("dances the twist", "dancing the twist"), ("twists the hips while dancing", "twisting the hips while dancing"),
                                                 ("does the twist", "doing the twist")]),
    _a("disco_point", DA, gestures.disco_point, [("does the disco point with the {side} arm", "doing the disco point with the {side} arm"),
                                                 ("points up to the sky and down like a disco dancer", "pointing up to the sky and down like a disco dancer"),
                                                 ("dances disco style", "dancing disco style")]),
    # Shows
    _a("bow", SH, gestures.bow, [("bows to the audience", "bowing to the audience"), ("takes a deep bow", "taking a deep bow"),
                                 ("bows deeply to the crowd", "bowing deeply to the crowd")], (3.0, 6.0)),
    _a("theatrical", SH, gestures.theatrical, [("makes grand theatrical gestures", "making grand theatrical gestures"),
                                               ("opens the arms wide and presses a hand to the heart", "opening the arms wide and pressing a hand to the heart"),
                                               ("declaims dramatically on stage", "declaiming dramatically on stage")]),
    _a("catwalk", SH, gaits.catwalk, [("struts down the catwalk", "strutting down the catwalk"), ("walks like a runway model", "walking like a runway model"),
                                      ("does a catwalk strut", "doing a catwalk strut")]),
    _a("magic_flourish", SH, gestures.magic_flourish, [("performs a magic flourish", "performing a magic flourish"),
                                                       ("rolls the hands and reveals a trick", "rolling the hands and revealing a trick"),
                                                       ("does a magic trick with a flourish", "doing a magic trick with a flourish")], (2.5, 5.0)),
    _a("clap_overhead", SH, gestures.clap_overhead, [("claps the hands above the head", "clapping the hands above the head"),
                                                     ("claps overhead to get the crowd going", "clapping overhead to get the crowd going"),
                                                     ("claps high in the air", "clapping high in the air")]),
    _a("wave_to_crowd", SH, gestures.wave_to_crowd, [("waves both arms to the audience", "waving both arms to the audience"),
                                                     ("greets the crowd waving both hands high", "greeting the crowd waving both hands high"),
                                                     ("waves to the audience with raised arms", "waving to the audience with raised arms")]),
    # Game
    _a("sword_slash", GA, gestures.sword_slash, [("slashes with a sword", "slashing with a sword"),
                                                 ("swings a two handed sword", "swinging a two handed sword"),
                                                 ("attacks with sword strikes", "attacking with sword strikes")]),
    _a("spell_cast", GA, gestures.spell_cast, [("casts a spell", "casting a spell"), ("gathers magic and throws it forward", "gathering magic and throwing it forward"),
                                               ("thrusts both palms forward to cast a spell", "thrusting both palms forward to cast a spell")]),
    _a("sneak", GA, gaits.sneak, [("sneaks forward crouching low", "sneaking forward crouching low"), ("creeps forward in a crouch", "creeping forward in a crouch"),
                                  ("sneaks ahead bent over", "sneaking ahead bent over")]),
    _a("aim_shoot", GA, gestures.aim_shoot, [("aims a rifle and shoots", "aiming a rifle and shooting"), ("takes aim and fires", "taking aim and firing"),
                                             ("shoots a gun while scanning around", "shooting a gun while scanning around")]),
    _a("victory_pose", GA, gestures.victory_pose, [("celebrates a victory with raised arms", "celebrating a victory with raised arms"),
                                                   ("pumps a fist and throws both arms up", "pumping a fist and throwing both arms up"),
                                                   ("strikes a victory pose", "striking a victory pose")], (3.0, 6.0)),
    _a("shield_block", GA, gestures.shield_block, [("blocks with a shield", "blocking with a shield"), ("raises a shield to block attacks", "raising a shield to block attacks"),
                                                   ("braces behind a shield", "bracing behind a shield")]),
    # Animation
    _a("bouncy_walk", AN, gaits.bouncy_walk, [("walks with a bouncy step", "walking with a bouncy step"), ("bounces along like a cartoon", "bouncing along like a cartoon"),
                                              ("walks with a spring in each step", "walking with a spring in each step")]),
    _a("zombie_walk", AN, gaits.zombie_walk, [("walks like a zombie", "walking like a zombie"), ("shambles forward with the arms stretched out", "shambling forward with the arms stretched out"),
                                              ("lurches forward like a zombie", "lurching forward like a zombie")]),
    _a("robot_walk", AN, gaits.robot_walk, [("walks like a robot", "walking like a robot"), ("moves forward with stiff robotic steps", "moving forward with stiff robotic steps"),
                                            ("does a robot walk", "doing a robot walk")]),
    _a("tiptoe_sneak", AN, gaits.tiptoe_sneak, [("tiptoes forward", "tiptoeing forward"), ("sneaks on tiptoe like a cartoon", "sneaking on tiptoe like a cartoon"),
                                                ("creeps on the toes with high steps", "creeping on the toes with high steps")]),
    _a("bird_flap", AN, gestures.bird_flap, [("flaps the arms like a bird", "flapping the arms like a bird"), ("pretends to be a bird flapping its wings", "pretending to be a bird flapping its wings"),
                                             ("flaps both arms like wings", "flapping both arms like wings")]),
    _a("march", AN, gaits.march, [("marches like a toy soldier", "marching like a toy soldier"), ("marches with high knees", "marching with high knees"),
                                  ("marches forward stiffly", "marching forward stiffly")]),
    # Instrument Play
    _a("guitar", IP, gestures.guitar, [("plays the guitar", "playing the guitar"), ("strums a guitar", "strumming a guitar"),
                                       ("plays chords on a guitar", "playing chords on a guitar")]),
    _a("drums", IP, gestures.drums, [("plays the drums", "playing the drums"), ("beats a drum with sticks", "beating a drum with sticks"),
                                     ("drums a rhythm", "drumming a rhythm")]),
    _a("violin", IP, gestures.violin, [("plays the violin", "playing the violin"), ("draws a bow across a violin", "drawing a bow across a violin"),
                                       ("plays a tune on the violin", "playing a tune on the violin")]),
    _a("trumpet", IP, gestures.trumpet, [("plays the trumpet", "playing the trumpet"), ("blows a trumpet", "blowing a trumpet"),
                                         ("plays a tune on a trumpet", "playing a tune on a trumpet")]),
    _a("conducting", IP, gestures.conducting, [("conducts an orchestra", "conducting an orchestra"), ("beats time like a conductor", "beating time like a conductor"),
                                               ("leads the orchestra with a baton", "leading the orchestra with a baton")]),
    _a("piano", IP, gestures.piano, [("plays the piano", "playing the piano"), ("plays a keyboard", "playing a keyboard"),
                                     ("runs the hands over piano keys", "running the hands over piano keys")]),
    # Acrobatics
    _a("vertical_jump", AC, jumps.vertical_jump, [("jumps straight up", "jumping straight up"), ("leaps up into the air", "leaping up into the air"),
                                                  ("does vertical jumps", "doing vertical jumps")], (2.5, 7.0)),
    _a("tuck_jump", AC, jumps.tuck_jump, [("does a tuck jump", "doing a tuck jump"), ("jumps and pulls the knees to the chest", "jumping and pulling the knees to the chest"),
                                          ("jumps up tucking the knees", "jumping up tucking the knees")], (2.5, 7.0)),
    _a("split_leap", AC, jumps.split_leap, [("does a split leap", "doing a split leap"), ("leaps forward with the legs split", "leaping forward with the legs split"),
                                            ("performs a leap with legs spread front and back", "performing a leap with legs spread front and back")], (2.5, 6.0)),
    _a("jump_spin", AC, jumps.jump_spin, [("jumps and spins in the air to the {turn}", "jumping and spinning in the air to the {turn}"),
                                          ("does a spinning jump", "doing a spinning jump"), ("leaps up and turns around in the air", "leaping up and turning around in the air")],
       (2.5, 7.0)),
    _a("star_jump", AC, jumps.star_jump, [("does a star jump", "doing a star jump"), ("jumps spreading the arms and legs like a star", "jumping spreading the arms and legs like a star"),
                                          ("leaps into a star shape", "leaping into a star shape")], (2.5, 7.0)),
    _a("broad_jump", AC, jumps.broad_jump, [("does a standing long jump", "doing a standing long jump"), ("jumps far forward with both feet", "jumping far forward with both feet"),
                                            ("swings the arms and leaps forward", "swinging the arms and leaping forward")], (2.5, 7.0)),
)

ACTIONS: dict[str, Action] = {action.id: action for action in _CATALOGUE}
ACTIONS_BY_SCENARIO: dict[str, tuple[Action, ...]] = {
    scenario: tuple(a for a in _CATALOGUE if a.scenario == scenario) for scenario in SCENARIOS
}

assert len(ACTIONS) == len(_CATALOGUE), "duplicate action id"
